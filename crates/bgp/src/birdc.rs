//! What BIRD 2.0's `birdc` prints, parsed: `show protocols` and `show route`.
//!
//! `birdc` prints a greeting (`BIRD 2.0.12 ready.`) before every answer; an error answer is one
//! line such as `syntax error, unexpected ...` or `Unknown protocol`. The tables are aligned with
//! spaces; a name longer than its column pushes the rest of the line right, so fields are split
//! on whitespace rather than cut at fixed columns.

use std::net::Ipv4Addr;

use routing::Destination;

use crate::BgpError;

/// One row of `birdc show protocols`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BirdProtocol {
    /// `Mesh_10_10_68_223`, `kernel1`, ...
    pub name: String,
    /// `BGP`, `Kernel`, `Device`, `Direct`, `Static`.
    pub proto: String,
    /// `master4`, or `---` for none.
    pub table: String,
    /// `up`, `start`, `down`, `flush`.
    pub state: String,
    /// When the protocol entered its state, as BIRD prints it (`2026-11-26 19:03:08` with
    /// `timeformat protocol iso long`).
    pub since: String,
    /// The rest, whitespace collapsed: for BGP the session state (`Established`, `Active`,
    /// `Connect`, ...) and maybe the last error (`Socket: Connection refused`).
    pub info: String,
}

/// Parses `birdc show protocols` (with or without the greeting and header lines).
pub fn parse_protocols(text: &str) -> Result<Vec<BirdProtocol>, BgpError> {
    let mut protocols = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() || is_greeting(line) || fields[0] == "Name" {
            continue;
        }
        if let Some(error) = error_line(line) {
            return Err(BgpError::Birdc(error));
        }
        if fields.len() < 4 {
            return Err(BgpError::Unparsable {
                line: index + 1,
                reason: format!("expected name, protocol, table and state in {line:?}"),
            });
        }
        // The since column is one token (`19:03:08`) or two (`2026-11-26 19:03:08`).
        let since_tokens = fields[4..]
            .iter()
            .take(2)
            .take_while(|token| looks_like_time(token))
            .count();
        let since = fields[4..4 + since_tokens].join(" ");
        let info = fields[4 + since_tokens..].join(" ");
        protocols.push(BirdProtocol {
            name: fields[0].to_owned(),
            proto: fields[1].to_owned(),
            table: fields[2].to_owned(),
            state: fields[3].to_owned(),
            since,
            info,
        });
    }
    Ok(protocols)
}

/// One route of `birdc show route`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BirdRoute {
    pub prefix: Destination,
    /// `unicast`, `blackhole`, `unreachable`, `prohibit`.
    pub kind: String,
    /// The protocol it came from: `Mesh_10_10_68_223`, `static1`, `direct1`, `kernel1`, ...
    pub protocol: String,
    /// Marked `*`: the route BIRD selected for this prefix.
    pub primary: bool,
    /// `via <address>` of the first next hop.
    pub next_hop: Option<Ipv4Addr>,
    /// `on <interface>` or `dev <interface>` of the first next hop.
    pub interface: Option<String>,
}

/// Parses `birdc show route` (BIRD 2.0): a line per route starting with its prefix (a further
/// route for the same prefix starts with spaces instead), then indented next-hop lines
/// (`via 10.10.68.223 on eth0`, `dev eth0`) and, with `all`, attribute lines, which are skipped.
pub fn parse_routes(text: &str) -> Result<Vec<BirdRoute>, BgpError> {
    let mut routes: Vec<BirdRoute> = Vec::new();
    let mut current_prefix: Option<Destination> = None;
    for (index, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() || is_greeting(line) || line.starts_with("Table ") {
            continue;
        }
        if let Some(error) = error_line(line) {
            return Err(BgpError::Birdc(error));
        }
        let unparsable = |reason: &str| BgpError::Unparsable {
            line: index + 1,
            reason: format!("{reason} in {line:?}"),
        };
        let indented = line.starts_with([' ', '\t']);
        let (prefix, rest) = if !indented {
            let prefix: Destination = fields[0].parse().map_err(|_| unparsable("not a prefix"))?;
            current_prefix = Some(prefix);
            (prefix, &fields[1..])
        } else if fields.len() >= 2 && fields[1].starts_with('[') {
            // Another route for the prefix above.
            let prefix = current_prefix.ok_or_else(|| unparsable("a route without a prefix"))?;
            (prefix, &fields[..])
        } else {
            // A next hop or an attribute of the route above.
            let Some(route) = routes.last_mut() else {
                return Err(unparsable("a next hop without a route"));
            };
            if route.next_hop.is_none() && route.interface.is_none() {
                match fields.as_slice() {
                    ["via", address, "on", interface, ..] => {
                        route.next_hop = address.parse().ok();
                        route.interface = Some((*interface).to_owned());
                    }
                    ["dev", interface, ..] => route.interface = Some((*interface).to_owned()),
                    _ => {}
                }
            }
            continue;
        };
        let kind = rest
            .first()
            .ok_or_else(|| unparsable("no route kind"))?
            .to_string();
        let protocol = rest
            .get(1)
            .and_then(|field| field.strip_prefix('['))
            .ok_or_else(|| unparsable("no [protocol ...]"))?
            .trim_end_matches(']')
            .to_owned();
        let primary = rest.contains(&"*");
        routes.push(BirdRoute {
            prefix,
            kind,
            protocol,
            primary,
            next_hop: None,
            interface: None,
        });
    }
    Ok(routes)
}

fn is_greeting(line: &str) -> bool {
    line.starts_with("BIRD ") && line.trim_end().ends_with("ready.")
}

/// `birdc`'s one-line error answers.
fn error_line(line: &str) -> Option<String> {
    let line = line.trim();
    let known = [
        "syntax error",
        "Unknown ",
        "Unable to connect",
        "No such",
        "Access denied",
        "Error",
    ];
    known
        .iter()
        .any(|prefix| line.starts_with(prefix))
        .then(|| line.to_owned())
}

fn looks_like_time(token: &str) -> bool {
    !token.is_empty()
        && token.contains([':', '-'])
        && token
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ':' | '-' | '.'))
}
