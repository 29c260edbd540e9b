// Every page module of the console; each registers itself (lib/pages.js). One line per page.
import "./cluster.js";
