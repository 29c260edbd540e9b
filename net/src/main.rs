//! `dispatchd`: the dispatch server binary. A thin wrapper that parses its
//! command line; the HTTP API and the WebSocket gateway arrive with issue 6.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    eprintln!("dispatchd: the server is not built yet; see README.md");
    std::process::ExitCode::from(2)
}
