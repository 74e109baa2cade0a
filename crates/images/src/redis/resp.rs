//! RESP2, the protocol `redis-cli` and every Redis client library speak: commands arrive as
//! arrays of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) or, typed by hand in telnet, as
//! inline lines (`GET k\r\n`); replies are simple strings, errors, integers, bulk strings and
//! arrays. The parsers are incremental: they return `None` until a whole command (or reply)
//! is in the buffer, so pipelined requests are taken one after the other from one read.
//!
//! Limits and error texts are Redis's own (`networking.c`), since a course user may see them.

/// The longest inline command Redis accepts (`PROTO_INLINE_MAX_SIZE`).
pub const INLINE_MAX: usize = 64 * 1024;
/// The most elements a command array may have.
pub const MULTIBULK_MAX: i64 = 1024 * 1024;
/// The longest bulk string (`proto-max-bulk-len`, 512 MB).
pub const BULK_MAX: i64 = 512 * 1024 * 1024;

/// A reply, as the server encodes it and a client decodes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...`: the text includes the error code (`ERR`, `WRONGTYPE`).
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$3\r\nabc`.
    Bulk(Vec<u8>),
    /// `$-1`: a missing key.
    Nil,
    /// `*2\r\n...`.
    Array(Vec<Reply>),
    /// `*-1`.
    NilArray,
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::Simple("OK".to_string())
    }

    pub fn error(text: impl Into<String>) -> Reply {
        Reply::Error(text.into())
    }

    pub fn bulk(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply::Bulk(bytes.into())
    }

    /// Appends the wire form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Simple(s) => {
                out.push(b'+');
                out.extend(s.bytes().filter(|b| !matches!(b, b'\r' | b'\n')));
                out.extend_from_slice(b"\r\n");
            }
            Reply::Error(s) => {
                out.push(b'-');
                out.extend(s.bytes().filter(|b| !matches!(b, b'\r' | b'\n')));
                out.extend_from_slice(b"\r\n");
            }
            Reply::Integer(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
            Reply::Bulk(b) => {
                out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Nil => out.extend_from_slice(b"$-1\r\n"),
            Reply::Array(items) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                for item in items {
                    item.encode(out);
                }
            }
            Reply::NilArray => out.extend_from_slice(b"*-1\r\n"),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Encodes a command as a client sends it: an array of bulk strings.
pub fn encode_command<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A request the server cannot read; Redis answers `-ERR <message>` and closes the
/// connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Protocol error: {0}")]
pub struct ProtocolError(pub String);

fn protocol(msg: impl Into<String>) -> ProtocolError {
    ProtocolError(msg.into())
}

/// What [`parse_command`] found at the start of a buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A command and how many bytes it took.
    Command(Vec<Vec<u8>>, usize),
    /// Bytes to drop without an answer (an empty inline line, `*0`).
    Skip(usize),
}

/// The index of the first `\r\n` at or after `from`.
fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| from + i)
}

/// A signed decimal as Redis's `string2ll` reads it.
fn parse_decimal(bytes: &[u8]) -> Option<i64> {
    parse_i64_strict(bytes)
}

/// Redis's strict integer syntax: an optional `-`, then digits without leading zeros (`0`
/// itself allowed), no spaces or `+`, within i64.
pub fn parse_i64_strict(bytes: &[u8]) -> Option<i64> {
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    if digits.is_empty()
        || !digits.iter().all(u8::is_ascii_digit)
        || (digits.len() > 1 && digits[0] == b'0')
        || (negative && digits == b"0")
    {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    text.parse::<i64>().ok()
}

/// Takes one command off the front of `buf`: `Ok(None)` when it is not all there yet.
pub fn parse_command(buf: &[u8]) -> Result<Option<Parsed>, ProtocolError> {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_multibulk(buf),
        Some(_) => parse_inline(buf),
    }
}

fn parse_inline(buf: &[u8]) -> Result<Option<Parsed>, ProtocolError> {
    let Some(newline) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > INLINE_MAX {
            Err(protocol("too big inline request"))
        } else {
            Ok(None)
        };
    };
    let mut line = &buf[..newline];
    if let Some(stripped) = line.strip_suffix(b"\r") {
        line = stripped;
    }
    let args = split_inline_args(line).ok_or_else(|| protocol("unbalanced quotes in request"))?;
    if args.is_empty() {
        Ok(Some(Parsed::Skip(newline + 1)))
    } else {
        Ok(Some(Parsed::Command(args, newline + 1)))
    }
}

/// Splits an inline line into words as Redis's `sdssplitargs` does: blanks separate words,
/// `"..."` takes `\n`, `\t`, `\\`, `\"` and `\xHH` escapes, `'...'` only `\'`; a closing
/// quote must be followed by a blank. `None` for unbalanced quotes.
pub fn split_inline_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut i = 0;
    let blank = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0);
    loop {
        while i < line.len() && blank(line[i]) {
            i += 1;
        }
        if i >= line.len() {
            return Some(args);
        }
        let mut word = Vec::new();
        let mut in_double = false;
        let mut in_single = false;
        loop {
            let c = line.get(i).copied();
            if in_double {
                match c {
                    None => return None,
                    Some(b'\\') if line.get(i + 1) == Some(&b'x') => {
                        let hex = line.get(i + 2..i + 4).and_then(|h| {
                            std::str::from_utf8(h)
                                .ok()
                                .and_then(|h| u8::from_str_radix(h, 16).ok())
                        });
                        match hex {
                            Some(b) => {
                                word.push(b);
                                i += 3;
                            }
                            None => {
                                word.push(b'\\');
                            }
                        }
                    }
                    Some(b'\\') if i + 1 < line.len() => {
                        i += 1;
                        word.push(match line[i] {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 0x08,
                            b'a' => 0x07,
                            other => other,
                        });
                    }
                    Some(b'"') => {
                        if line.get(i + 1).is_some_and(|&b| !blank(b)) {
                            return None;
                        }
                        i += 1;
                        break;
                    }
                    Some(b) => word.push(b),
                }
            } else if in_single {
                match c {
                    None => return None,
                    Some(b'\\') if line.get(i + 1) == Some(&b'\'') => {
                        i += 1;
                        word.push(b'\'');
                    }
                    Some(b'\'') => {
                        if line.get(i + 1).is_some_and(|&b| !blank(b)) {
                            return None;
                        }
                        i += 1;
                        break;
                    }
                    Some(b) => word.push(b),
                }
            } else {
                match c {
                    None => break,
                    Some(b) if blank(b) => break,
                    Some(b'"') => in_double = true,
                    Some(b'\'') => in_single = true,
                    Some(b) => word.push(b),
                }
            }
            i += 1;
        }
        args.push(word);
    }
}

fn parse_multibulk(buf: &[u8]) -> Result<Option<Parsed>, ProtocolError> {
    let Some(end) = find_crlf(buf, 1) else {
        return if buf.len() > INLINE_MAX {
            Err(protocol("too big mbulk count string"))
        } else {
            Ok(None)
        };
    };
    let count = parse_decimal(&buf[1..end])
        .filter(|&n| n <= MULTIBULK_MAX)
        .ok_or_else(|| protocol("invalid multibulk length"))?;
    let mut at = end + 2;
    if count <= 0 {
        return Ok(Some(Parsed::Skip(at)));
    }
    let mut args = Vec::with_capacity(usize::try_from(count.min(1024)).unwrap_or(0));
    for _ in 0..count {
        let Some(&first) = buf.get(at) else {
            return Ok(None);
        };
        let Some(end) = find_crlf(buf, at + 1) else {
            return if buf.len() - at > INLINE_MAX {
                Err(protocol("too big bulk count string"))
            } else {
                Ok(None)
            };
        };
        if first != b'$' {
            return Err(protocol(format!(
                "expected '$', got '{}'",
                char::from(first).escape_default()
            )));
        }
        let len = parse_decimal(&buf[at + 1..end])
            .filter(|&n| (0..=BULK_MAX).contains(&n))
            .ok_or_else(|| protocol("invalid bulk length"))?;
        let len = usize::try_from(len).map_err(|_| protocol("invalid bulk length"))?;
        let start = end + 2;
        if buf.len() < start + len + 2 {
            return Ok(None);
        }
        args.push(buf[start..start + len].to_vec());
        at = start + len + 2;
    }
    Ok(Some(Parsed::Command(args, at)))
}

/// Takes one reply off the front of `buf` (the client side): `Ok(None)` when it is not all
/// there yet.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    let Some(end) = find_crlf(buf, 1) else {
        return Ok(None);
    };
    let line = &buf[1..end];
    let text = || String::from_utf8_lossy(line).into_owned();
    let number = || {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| protocol(format!("bad number in reply: {}", text())))
    };
    let after = end + 2;
    match kind {
        b'+' => Ok(Some((Reply::Simple(text()), after))),
        b'-' => Ok(Some((Reply::Error(text()), after))),
        b':' => Ok(Some((Reply::Integer(number()?), after))),
        b'$' => {
            let n = number()?;
            if n < 0 {
                return Ok(Some((Reply::Nil, after)));
            }
            let n = usize::try_from(n).map_err(|_| protocol("bad bulk length"))?;
            if buf.len() < after + n + 2 {
                return Ok(None);
            }
            Ok(Some((
                Reply::Bulk(buf[after..after + n].to_vec()),
                after + n + 2,
            )))
        }
        b'*' => {
            let n = number()?;
            if n < 0 {
                return Ok(Some((Reply::NilArray, after)));
            }
            let mut items = Vec::new();
            let mut at = after;
            for _ in 0..n {
                match parse_reply(&buf[at..])? {
                    Some((item, used)) => {
                        items.push(item);
                        at += used;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(items), at)))
        }
        other => Err(protocol(format!(
            "unexpected reply type '{}'",
            char::from(other).escape_default()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<Vec<u8>> {
        words.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    #[test]
    fn multibulk_commands_and_pipelining() {
        let buf = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n";
        let Some(Parsed::Command(first, used)) = parse_command(buf).unwrap() else {
            panic!("one command")
        };
        assert_eq!(first, args(&["GET", "k"]));
        let Some(Parsed::Command(second, used2)) = parse_command(&buf[used..]).unwrap() else {
            panic!("a second command")
        };
        assert_eq!(second, args(&["PING"]));
        assert_eq!(used + used2, buf.len());
    }

    #[test]
    fn incomplete_commands_wait_for_more() {
        let full = b"*2\r\n$3\r\nSET\r\n$5\r\nhello\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse_command(&full[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(parse_command(full).unwrap().is_some());
    }

    #[test]
    fn binary_safe_bulk_strings() {
        let buf = b"*2\r\n$4\r\nECHO\r\n$4\r\na\r\nb\r\n";
        let Some(Parsed::Command(a, _)) = parse_command(buf).unwrap() else {
            panic!()
        };
        assert_eq!(a[1], b"a\r\nb");
    }

    #[test]
    fn inline_commands_like_telnet() {
        assert_eq!(
            parse_command(b"SET k \"hello world\"\r\n").unwrap(),
            Some(Parsed::Command(args(&["SET", "k", "hello world"]), 21))
        );
        assert_eq!(
            parse_command(b"ping\n").unwrap(),
            Some(Parsed::Command(args(&["ping"]), 5))
        );
        assert_eq!(parse_command(b"\r\n").unwrap(), Some(Parsed::Skip(2)));
        assert_eq!(parse_command(b"GET k").unwrap(), None);
        assert_eq!(
            split_inline_args(b"a \"\\x41\\n\" 'it\\'s'").unwrap(),
            args(&["a", "A\n", "it's"])
        );
        assert_eq!(
            parse_command(b"SET k \"oops\r\n").unwrap_err().to_string(),
            "Protocol error: unbalanced quotes in request"
        );
    }

    #[test]
    fn protocol_errors_use_redis_wording() {
        assert_eq!(
            parse_command(b"*x\r\n").unwrap_err().to_string(),
            "Protocol error: invalid multibulk length"
        );
        assert_eq!(
            parse_command(b"*1\r\n:3\r\n").unwrap_err().to_string(),
            "Protocol error: expected '$', got ':'"
        );
        assert_eq!(
            parse_command(b"*1\r\n$-5\r\n").unwrap_err().to_string(),
            "Protocol error: invalid bulk length"
        );
        assert!(parse_command(&vec![b'a'; INLINE_MAX + 1]).is_err());
        assert_eq!(parse_command(b"*0\r\n").unwrap(), Some(Parsed::Skip(4)));
    }

    #[test]
    fn strict_integers() {
        assert_eq!(parse_i64_strict(b"42"), Some(42));
        assert_eq!(parse_i64_strict(b"-7"), Some(-7));
        assert_eq!(parse_i64_strict(b"0"), Some(0));
        for bad in [
            "",
            "-",
            "+1",
            " 1",
            "01",
            "-0",
            "1.5",
            "9223372036854775808",
        ] {
            assert_eq!(parse_i64_strict(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn replies_round_trip() {
        let reply = Reply::Array(vec![
            Reply::ok(),
            Reply::error("ERR nope"),
            Reply::Integer(-3),
            Reply::bulk("x\r\ny"),
            Reply::Nil,
            Reply::Array(vec![]),
            Reply::NilArray,
        ]);
        let bytes = reply.to_bytes();
        assert_eq!(
            bytes,
            b"*7\r\n+OK\r\n-ERR nope\r\n:-3\r\n$4\r\nx\r\ny\r\n$-1\r\n*0\r\n*-1\r\n"
        );
        assert_eq!(parse_reply(&bytes).unwrap(), Some((reply, bytes.len())));
        assert_eq!(parse_reply(&bytes[..bytes.len() - 1]).unwrap(), None);
        assert_eq!(
            encode_command(&["SET", "k", "v"]),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"
        );
    }
}
