//! The words of every notification, in the recipient's language: a pure function from a
//! [`Kind`] and its [`Params`] to a title and a body.
//!
//! Owns the texts (English and Arabic; any other language, or a tag it cannot read, gets
//! English), and how numbers and money read in each: English `EGP 45.50`, `1.2 km`;
//! Arabic with Arabic-Indic digits (٠–٩), the Arabic decimal separator (٫) and the
//! currency's own exponent (`Currency::exponent`). Guarantees: Arabic text is plain
//! right-to-left Arabic, and every left-to-right fragment in it (a plate, a name in Latin
//! letters, a reference, an amount with its code) is wrapped in Unicode isolates
//! (FIRST STRONG ISOLATE U+2068 … POP DIRECTIONAL ISOLATE U+2069), so it displays in one
//! piece and does not reorder the sentence around it; rendering never fails (a missing
//! input leaves its phrase out).

use crate::money::Currency;
use crate::outbox::{Kind, Params};

/// A rendered notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// A push's title, an email's subject.
    pub title: String,
    /// The text.
    pub body: String,
}

/// The languages with texts of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English (the fallback).
    En,
    /// Arabic.
    Ar,
}

impl Lang {
    /// The language of a BCP 47 tag: its primary subtag, any case; English when unknown.
    pub fn of(tag: &str) -> Lang {
        let primary = tag.split(['-', '_']).next().unwrap_or("");
        if primary.eq_ignore_ascii_case("ar") { Lang::Ar } else { Lang::En }
    }
}

/// FIRST STRONG ISOLATE … POP DIRECTIONAL ISOLATE around `s`.
fn iso(s: &str) -> String {
    format!("\u{2068}{s}\u{2069}")
}

/// `n` with Arabic-Indic digits.
fn arabic_digits(s: &str) -> String {
    s.chars()
        .map(|c| match c.to_digit(10) {
            Some(d) => char::from_u32(0x0660 + d).unwrap_or(c),
            None if c == '.' => '\u{066B}',
            None => c,
        })
        .collect()
}

/// A plain number in `lang`.
pub fn number(n: u64, lang: Lang) -> String {
    match lang {
        Lang::En => n.to_string(),
        Lang::Ar => arabic_digits(&n.to_string()),
    }
}

/// `amount_minor` of `currency` in `lang`: `EGP 45.50` in English; in Arabic the amount
/// in Arabic-Indic digits then the code, isolated (U+2068 `٤٥٫٥٠ EGP` U+2069).
pub fn money(amount_minor: i64, currency: Currency, lang: Lang) -> String {
    let exp = u32::from(currency.exponent());
    let sign = if amount_minor < 0 { "-" } else { "" };
    let abs = amount_minor.unsigned_abs();
    let plain = if exp == 0 {
        format!("{sign}{abs}")
    } else {
        let unit = 10u64.pow(exp);
        format!("{sign}{}.{:0width$}", abs / unit, abs % unit, width = exp as usize)
    };
    match lang {
        Lang::En => format!("{} {plain}", currency.code()),
        Lang::Ar => iso(&format!("{} {}", arabic_digits(&plain), currency.code())),
    }
}

/// A distance in `lang`: metres below 1 km, else km with one decimal.
fn distance(m: u32, lang: Lang) -> String {
    let plain = if m < 1_000 { format!("{m}") } else { format!("{}.{}", m / 1_000, (m % 1_000) / 100) };
    match (lang, m < 1_000) {
        (Lang::En, true) => format!("{plain} m"),
        (Lang::En, false) => format!("{plain} km"),
        (Lang::Ar, true) => format!("{} م", arabic_digits(&plain)),
        (Lang::Ar, false) => format!("{} كم", arabic_digits(&plain)),
    }
}

/// What the sender knows when it sends and the state does not: an item's [`Params`] are
/// captured when it is made, by `apply`, which knows no ETA. The server's delivery worker
/// fills this just before rendering (from its route provider); each field is optional and
/// its phrase left out when unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Live {
    /// Seconds the driver still needs to the pickup (`trip_accepted`).
    pub eta_s: Option<u64>,
}

/// Renders `kind` with `params` in the recipient's language (`params.language`).
pub fn render(kind: Kind, params: &Params) -> Rendered {
    render_live(kind, params, Live::default())
}

/// [`render`] with what the sender knows at send time ([`Live`]).
pub fn render_live(kind: Kind, params: &Params, live: Live) -> Rendered {
    let lang = Lang::of(&params.language);
    match lang {
        Lang::En => english(kind, params, live),
        Lang::Ar => arabic(kind, params, live),
    }
}

/// Whole minutes in `seconds`, rounded up, at least one (an ETA of 20 s reads "1 min").
fn eta_minutes(seconds: u64) -> u64 {
    seconds.div_ceil(60).max(1)
}

/// `n` minutes in Arabic, the noun agreeing with the number: دقيقة واحدة, دقيقتان,
/// 3–10 دقائق, 11 and more دقيقة (digits Arabic-Indic).
fn arabic_minutes(n: u64) -> String {
    match n {
        1 => "دقيقة واحدة".to_string(),
        2 => "دقيقتين".to_string(),
        3..=10 => format!("{} دقائق", number(n, Lang::Ar)),
        _ => format!("{} دقيقة", number(n, Lang::Ar)),
    }
}

fn amount(params: &Params, lang: Lang) -> Option<String> {
    Some(money(params.amount_minor?, params.currency?, lang))
}

fn english(kind: Kind, p: &Params, live: Live) -> Rendered {
    let name = p.name.clone().unwrap_or_else(|| "Your driver".into());
    let (title, body) = match kind {
        Kind::TripOffer => {
            let mut body = "A new trip is waiting for you".to_string();
            if let Some(d) = p.distance_m {
                body += &format!(", {} from you", distance(d, Lang::En));
            }
            if let Some(a) = amount(p, Lang::En) {
                body += &format!(", {a}");
            }
            ("New trip offer".to_string(), body + ".")
        }
        Kind::TripAccepted => {
            let mut body = format!("{name} is on the way");
            if let Some(v) = &p.vehicle {
                body += &format!(" in a {v}");
            }
            if let Some(plate) = &p.plate {
                body += &format!(", plate {plate}");
            }
            if let Some(s) = live.eta_s {
                body += &format!(", arriving in about {} min", eta_minutes(s));
            }
            ("Driver found".to_string(), body + ".")
        }
        Kind::DriverArrived => {
            let mut body = format!("{name} is at the pickup point");
            if let Some(plate) = &p.plate {
                body += &format!(" (plate {plate})");
            }
            ("Your driver has arrived".to_string(), body + ".")
        }
        Kind::TripCancelled => {
            ("Trip cancelled".to_string(), "Your trip was cancelled. We are sorry for the trouble.".to_string())
        }
        Kind::NoDriversNearby => (
            "No drivers nearby".to_string(),
            "There are no drivers near your pickup right now. We keep looking.".to_string(),
        ),
        Kind::TripExpired => {
            ("No driver found".to_string(), "Nobody took your trip in time. Please try again.".to_string())
        }
        Kind::Receipt => {
            let body = match amount(p, Lang::En) {
                Some(a) => format!("Thanks for riding with us. Your fare: {a}."),
                None => "Thanks for riding with us.".to_string(),
            };
            ("Your receipt".to_string(), body)
        }
        Kind::ChatMessage => {
            let from = p.name.clone().unwrap_or_else(|| "New message".into());
            (from, p.text.clone().unwrap_or_default())
        }
        Kind::DeliveryCode => {
            let code = p.text.clone().unwrap_or_default();
            ("Your delivery code".to_string(), format!("A parcel is on its way to you. Delivery code: {code}."))
        }
        Kind::Sos => {
            let mut body = format!("SOS raised by {}", p.name.clone().unwrap_or_else(|| "a user".into()));
            if let Some(r) = &p.reference {
                body += &format!(" on trip {r}");
            }
            if let Some(note) = &p.text {
                body += &format!(": {note}");
            }
            ("SOS".to_string(), body)
        }
        Kind::LicenceExpiring => {
            let body = match &p.text {
                Some(date) => format!("Your driving licence expires on {date}. Renew it to keep driving."),
                None => "Your driving licence expires soon. Renew it to keep driving.".to_string(),
            };
            ("Licence expiring".to_string(), body)
        }
    };
    let title = match (&p.reference, kind) {
        (Some(r), Kind::TripAccepted | Kind::Receipt) => format!("{title} · {r}"),
        _ => title,
    };
    Rendered { title, body }
}

fn arabic(kind: Kind, p: &Params, live: Live) -> Rendered {
    let name = p.name.as_deref().map(iso).unwrap_or_else(|| "سائقك".into());
    let (title, body) = match kind {
        Kind::TripOffer => {
            let mut body = "رحلة جديدة بانتظارك".to_string();
            if let Some(d) = p.distance_m {
                body += &format!("، على بعد {}", distance(d, Lang::Ar));
            }
            if let Some(a) = amount(p, Lang::Ar) {
                body += &format!("، {a}");
            }
            ("عرض رحلة جديد".to_string(), body + ".")
        }
        Kind::TripAccepted => {
            let mut body = format!("{name} في الطريق إليك");
            if let Some(v) = &p.vehicle {
                body += &format!(" في سيارة {}", iso(v));
            }
            if let Some(plate) = &p.plate {
                body += &format!("، رقم اللوحة {}", iso(plate));
            }
            if let Some(s) = live.eta_s {
                body += &format!("، ويصل خلال {} تقريبًا", arabic_minutes(eta_minutes(s)));
            }
            ("تم العثور على سائق".to_string(), body + ".")
        }
        Kind::DriverArrived => {
            let mut body = format!("{name} عند نقطة الالتقاء");
            if let Some(plate) = &p.plate {
                body += &format!(" (رقم اللوحة {})", iso(plate));
            }
            ("وصل سائقك".to_string(), body + ".")
        }
        Kind::TripCancelled => ("أُلغيت الرحلة".to_string(), "أُلغيت رحلتك. نعتذر عن الإزعاج.".to_string()),
        Kind::NoDriversNearby => {
            ("لا يوجد سائقون بالقرب".to_string(), "لا يوجد سائقون قرب نقطة الالتقاء الآن. سنواصل البحث.".to_string())
        }
        Kind::TripExpired => {
            ("لم نجد سائقًا".to_string(), "لم يقبل أحد رحلتك في الوقت المحدد. يرجى المحاولة مرة أخرى.".to_string())
        }
        Kind::Receipt => {
            let body = match amount(p, Lang::Ar) {
                Some(a) => format!("شكرًا لركوبك معنا. الأجرة: {a}."),
                None => "شكرًا لركوبك معنا.".to_string(),
            };
            ("إيصالك".to_string(), body)
        }
        Kind::ChatMessage => {
            let from = p.name.as_deref().map(iso).unwrap_or_else(|| "رسالة جديدة".into());
            (from, p.text.clone().unwrap_or_default())
        }
        Kind::DeliveryCode => {
            let code = p.text.as_deref().map(|c| iso(&arabic_digits(c))).unwrap_or_default();
            ("رمز التسليم".to_string(), format!("طرد في الطريق إليك. رمز التسليم: {code}."))
        }
        Kind::Sos => {
            let who = p.name.as_deref().map(iso).unwrap_or_else(|| "مستخدم".into());
            let mut body = format!("نداء استغاثة من {who}");
            if let Some(r) = &p.reference {
                body += &format!(" في الرحلة {}", iso(r));
            }
            if let Some(note) = &p.text {
                body += &format!(": {}", iso(note));
            }
            ("استغاثة".to_string(), body)
        }
        Kind::LicenceExpiring => {
            let body = match &p.text {
                Some(date) => format!("تنتهي رخصة قيادتك في {}. جدّدها لتواصل القيادة.", iso(&arabic_digits(date))),
                None => "تنتهي رخصة قيادتك قريبًا. جدّدها لتواصل القيادة.".to_string(),
            };
            ("رخصتك على وشك الانتهاء".to_string(), body)
        }
    };
    let title = match (&p.reference, kind) {
        (Some(r), Kind::TripAccepted | Kind::Receipt) => format!("{title} · {}", iso(r)),
        _ => title,
    };
    Rendered { title, body }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn egp() -> Currency {
        "EGP".parse().unwrap()
    }

    fn accepted(language: &str) -> Params {
        Params {
            language: language.into(),
            name: Some("Omar".into()),
            vehicle: Some("white Toyota Corolla".into()),
            plate: Some("ABC 123".into()),
            ..Params::default()
        }
    }

    #[test]
    fn english_money_has_the_code_first_and_the_currency_exponent() {
        assert_eq!(money(4550, egp(), Lang::En), "EGP 45.50");
        assert_eq!(money(5, egp(), Lang::En), "EGP 0.05");
        assert_eq!(money(1200, "JPY".parse().unwrap(), Lang::En), "JPY 1200");
        assert_eq!(money(12345, "KWD".parse().unwrap(), Lang::En), "KWD 12.345");
    }

    #[test]
    fn arabic_money_uses_arabic_indic_digits_and_an_isolate() {
        assert_eq!(money(4550, egp(), Lang::Ar), "\u{2068}٤٥٫٥٠ EGP\u{2069}");
        assert_eq!(money(12345, "KWD".parse().unwrap(), Lang::Ar), "\u{2068}١٢٫٣٤٥ KWD\u{2069}");
        assert_eq!(number(2026, Lang::Ar), "٢٠٢٦");
    }

    #[test]
    fn trip_accepted_in_english() {
        let r = render(Kind::TripAccepted, &accepted("en-GB"));
        assert_eq!(r.title, "Driver found");
        assert_eq!(r.body, "Omar is on the way in a white Toyota Corolla, plate ABC 123.");
    }

    #[test]
    fn trip_accepted_in_arabic_isolates_every_latin_fragment() {
        let r = render(Kind::TripAccepted, &accepted("ar-EG"));
        assert_eq!(r.title, "تم العثور على سائق");
        assert_eq!(
            r.body,
            "\u{2068}Omar\u{2069} في الطريق إليك في سيارة \u{2068}white Toyota Corolla\u{2069}، رقم اللوحة \u{2068}ABC 123\u{2069}."
        );
        // Every isolate is closed.
        assert_eq!(r.body.matches('\u{2068}').count(), r.body.matches('\u{2069}').count());
    }

    #[test]
    fn trip_accepted_carries_the_eta_when_the_sender_knows_it() {
        let live = |s| Live { eta_s: Some(s) };
        let en = render_live(Kind::TripAccepted, &accepted("en"), live(241));
        assert!(en.body.ends_with(", plate ABC 123, arriving in about 5 min."), "{}", en.body);
        assert!(render_live(Kind::TripAccepted, &accepted("en"), live(20)).body.ends_with("about 1 min."));
        assert!(render_live(Kind::TripAccepted, &accepted("en"), live(0)).body.ends_with("about 1 min."));
        let ar = render_live(Kind::TripAccepted, &accepted("ar"), live(241));
        assert_eq!(
            ar.body,
            "\u{2068}Omar\u{2069} في الطريق إليك في سيارة \u{2068}white Toyota Corolla\u{2069}، رقم اللوحة \u{2068}ABC 123\u{2069}، ويصل خلال ٥ دقائق تقريبًا."
        );
        let minutes = |s| render_live(Kind::TripAccepted, &accepted("ar"), live(s)).body;
        assert!(minutes(60).contains("خلال دقيقة واحدة تقريبًا"));
        assert!(minutes(120).contains("خلال دقيقتين تقريبًا"));
        assert!(minutes(11 * 60).contains("خلال ١١ دقيقة تقريبًا"));
        // Unknown: the phrase is left out, the text is what `render` gives.
        for lang in ["en", "ar"] {
            assert_eq!(
                render_live(Kind::TripAccepted, &accepted(lang), Live::default()),
                render(Kind::TripAccepted, &accepted(lang))
            );
        }
        // Other kinds ignore it.
        let arrived = Params { language: "en".into(), name: Some("Omar".into()), ..Params::default() };
        assert_eq!(render_live(Kind::DriverArrived, &arrived, live(60)), render(Kind::DriverArrived, &arrived));
    }

    #[test]
    fn receipts_in_both_languages() {
        let p = Params { amount_minor: Some(4550), currency: Some(egp()), ..Params::default() };
        let en = render(Kind::Receipt, &Params { language: "en".into(), ..p.clone() });
        assert_eq!(en.body, "Thanks for riding with us. Your fare: EGP 45.50.");
        let ar = render(Kind::Receipt, &Params { language: "ar".into(), ..p });
        assert_eq!(ar.title, "إيصالك");
        assert_eq!(ar.body, "شكرًا لركوبك معنا. الأجرة: \u{2068}٤٥٫٥٠ EGP\u{2069}.");
    }

    #[test]
    fn offers_show_distance_and_price_per_locale() {
        let p =
            Params { distance_m: Some(1_250), amount_minor: Some(3000), currency: Some(egp()), ..Params::default() };
        let en = render(Kind::TripOffer, &Params { language: "en".into(), ..p.clone() });
        assert_eq!(en.body, "A new trip is waiting for you, 1.2 km from you, EGP 30.00.");
        let ar = render(Kind::TripOffer, &Params { language: "ar".into(), ..p });
        assert_eq!(ar.body, "رحلة جديدة بانتظارك، على بعد ١٫٢ كم، \u{2068}٣٠٫٠٠ EGP\u{2069}.");
    }

    #[test]
    fn licence_reminders_in_both_languages() {
        let p = Params { text: Some("2027-01-31".into()), ..Params::default() };
        let en = render(Kind::LicenceExpiring, &Params { language: "en".into(), ..p.clone() });
        assert_eq!(en.body, "Your driving licence expires on 2027-01-31. Renew it to keep driving.");
        let ar = render(Kind::LicenceExpiring, &Params { language: "ar".into(), ..p });
        assert_eq!(ar.body, "تنتهي رخصة قيادتك في \u{2068}٢٠٢٧-٠١-٣١\u{2069}. جدّدها لتواصل القيادة.");
    }

    #[test]
    fn the_delivery_code_reads_in_both_languages() {
        let p = Params { text: Some("0482".into()), reference: Some("7KQ-2M4".into()), ..Params::default() };
        let en = render(Kind::DeliveryCode, &Params { language: "en".into(), ..p.clone() });
        assert_eq!(en.body, "A parcel is on its way to you. Delivery code: 0482.");
        let ar = render(Kind::DeliveryCode, &Params { language: "ar".into(), ..p });
        assert_eq!(ar.title, "رمز التسليم");
        // Arabic-Indic digits, leading zero kept, isolated as one left-to-right run.
        assert_eq!(ar.body, "طرد في الطريق إليك. رمز التسليم: \u{2068}٠٤٨٢\u{2069}.");
    }

    #[test]
    fn unknown_languages_fall_back_to_english_and_every_kind_renders() {
        assert_eq!(Lang::of("fr-FR"), Lang::En);
        assert_eq!(Lang::of(""), Lang::En);
        assert_eq!(Lang::of("AR"), Lang::Ar);
        let kinds = [
            Kind::TripOffer,
            Kind::TripAccepted,
            Kind::DriverArrived,
            Kind::TripCancelled,
            Kind::NoDriversNearby,
            Kind::TripExpired,
            Kind::Receipt,
            Kind::ChatMessage,
            Kind::DeliveryCode,
            Kind::Sos,
            Kind::LicenceExpiring,
        ];
        for kind in kinds {
            for lang in ["en", "ar", "fr"] {
                let r = render(kind, &Params { language: lang.into(), text: Some("hi".into()), ..Params::default() });
                assert!(!r.title.is_empty() && !r.body.is_empty(), "{kind:?} in {lang}");
            }
            let fr = render(kind, &Params { language: "fr".into(), ..Params::default() });
            let en = render(kind, &Params { language: "en".into(), ..Params::default() });
            assert_eq!(fr, en);
        }
    }
}
