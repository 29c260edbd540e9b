//! `[console]` (issue 23): what the operators' console's map draws under its layers, and
//! the checks of those settings.
//!
//! Guarantees: without `tile_url` (the default) the console loads nothing from another
//! origin (zones, graticule and scale bar only) and its `Content-Security-Policy` is
//! exactly API.md's; with one, `tile_url` is an `http(s)://host[:port]/…` URL holding
//! `{z}`, `{x}` and `{y}` and nothing a header or an attribute could be broken out of
//! (checked at start: a bad one stops start-up, exit 2, like every other setting), and
//! [`ConsoleSection::tile_origin`] is the one origin the policy's `img-src` adds.

use serde::{Deserialize, Serialize};

/// The longest `tile_url` / `tile_attribution` accepted.
pub const MAX_TILE_TEXT: usize = 512;

/// `[console]`: both empty by default (the offline map).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSection {
    /// A raster tile server's URL template, e.g. `https://tile.example.com/{z}/{x}/{y}.png`.
    pub tile_url: Option<String>,
    /// The tiles' attribution shown on the map (plain text), e.g. "© OpenStreetMap contributors".
    pub tile_attribution: String,
}

impl ConsoleSection {
    /// Checks `tile_url` and `tile_attribution` (see the module's guarantees).
    pub fn validate(&self) -> Result<(), String> {
        if self.tile_attribution.len() > MAX_TILE_TEXT || self.tile_attribution.chars().any(char::is_control) {
            return Err(format!("console: tile_attribution is at most {MAX_TILE_TEXT} bytes of text on one line"));
        }
        if let Some(url) = &self.tile_url {
            tile_origin(url).map_err(|why| format!("console: tile_url {why}"))?;
        }
        Ok(())
    }

    /// The origin (`https://tile.example.com:8443`) the tiles come from, if any.
    pub fn tile_origin(&self) -> Option<String> {
        self.tile_url.as_deref().and_then(|u| tile_origin(u).ok())
    }
}

/// The origin of a tile URL template, or why it is not one.
fn tile_origin(url: &str) -> Result<String, &'static str> {
    if url.len() > MAX_TILE_TEXT {
        return Err("is too long");
    }
    // Printable ASCII without what could end a CSP source, a header or an attribute.
    if !url.bytes().all(|b| b.is_ascii_graphic() && !b"\"'<>\\;,`^|".contains(&b)) {
        return Err("must be printable ASCII without spaces, quotes, <, >, \\, ;, `, ^, | or commas");
    }
    let rest = url
        .strip_prefix("https://")
        .map(|r| ("https://", r))
        .or_else(|| url.strip_prefix("http://").map(|r| ("http://", r)));
    let Some((scheme, rest)) = rest else { return Err("must be an http:// or https:// URL") };
    let (host, path) = rest.split_at(rest.find('/').ok_or("must have a path holding {z}, {x} and {y}")?);
    let host_ok = !host.is_empty()
        && !host.contains('@')
        && !host.contains('{')
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if !host_ok {
        return Err("must name a host (letters, digits, -, ., a :port; no {s} subdomains, no user@)");
    }
    if !["{z}", "{x}", "{y}"].iter().all(|p| path.contains(p)) {
        return Err("must hold {z}, {x} and {y}");
    }
    Ok(format!("{scheme}{}", host.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(url: &str) -> ConsoleSection {
        ConsoleSection { tile_url: Some(url.into()), tile_attribution: String::new() }
    }

    #[test]
    fn a_tile_url_names_its_origin() {
        assert_eq!(ConsoleSection::default().tile_origin(), None);
        assert!(ConsoleSection::default().validate().is_ok());
        for (url, origin) in [
            ("https://tile.example.com/{z}/{x}/{y}.png", "https://tile.example.com"),
            ("http://127.0.0.1:8081/t/{z}/{x}/{y}.png?key=abc", "http://127.0.0.1:8081"),
            ("https://Tiles.Example.com:8443/{z}/{y}/{x}", "https://tiles.example.com:8443"),
        ] {
            assert!(section(url).validate().is_ok(), "{url}");
            assert_eq!(section(url).tile_origin().as_deref(), Some(origin), "{url}");
        }
    }

    #[test]
    fn a_bad_tile_url_is_refused() {
        for url in [
            "",
            "tile.example.com/{z}/{x}/{y}.png",
            "ftp://tile.example.com/{z}/{x}/{y}.png",
            "https://tile.example.com",
            "https:///{z}/{x}/{y}.png",
            "https://tile.example.com/{z}/{x}.png",
            "https://{s}.tile.example.com/{z}/{x}/{y}.png",
            "https://user@tile.example.com/{z}/{x}/{y}.png",
            "https://tile.example.com/{z}/{x}/{y}.png; script-src *",
            "https://tile.example.com/{z}/{x}/{y}.png\"",
            "https://tile.example.com/{z}/{x}/{y} .png",
            "https://tile.example.com/{z}/{x}/{y}.png,https://evil.example",
        ] {
            assert!(section(url).validate().is_err(), "{url:?} accepted");
        }
        let long = ConsoleSection { tile_url: None, tile_attribution: "a\nb".into() };
        assert!(long.validate().is_err(), "an attribution on two lines");
    }
}
