// Every page module of the console; each registers itself (lib/pages.js). One line per page.
import "./cluster.js";
import "./users.js";
import "./applications.js";
import "./payouts.js";
import "./coupons.js";
import "./settings.js";
import "./audit.js";
import "./outbox.js";
import "./reports.js";
import "./zones.js";
