//! The keyspace and the commands DockerCoins and everyday `redis-cli` use, with Redis's
//! replies and error texts (`t_string.c`, `t_hash.c`, `db.c`, `server.c`): strings with
//! optional expiry, hashes, 16 databases. Pure: [`execute`] takes the store, the client's
//! session and the arguments, and returns the reply; the server does the I/O.
//!
//! Hashes keep insertion order, which is what Redis's small-hash encoding shows in `HGETALL`.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::resp::{Reply, parse_i64_strict};

/// `databases 16`, Redis's default.
pub const DATABASES: usize = 16;

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
const SYNTAX: &str = "ERR syntax error";

/// What a key holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Str(Vec<u8>),
    Hash(Hash),
}

/// A hash with Redis's small-hash order (insertion order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hash {
    fields: Vec<(Vec<u8>, Vec<u8>)>,
    index: HashMap<Vec<u8>, usize>,
}

impl Hash {
    /// Sets a field; `true` if it is new.
    pub fn set(&mut self, field: &[u8], value: &[u8]) -> bool {
        match self.index.get(field) {
            Some(&i) => {
                self.fields[i].1 = value.to_vec();
                false
            }
            None => {
                self.index.insert(field.to_vec(), self.fields.len());
                self.fields.push((field.to_vec(), value.to_vec()));
                true
            }
        }
    }

    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        self.index.get(field).map(|&i| self.fields[i].1.as_slice())
    }

    fn remove(&mut self, field: &[u8]) -> bool {
        let Some(i) = self.index.remove(field) else {
            return false;
        };
        self.fields.remove(i);
        for (n, (f, _)) in self.fields.iter().enumerate().skip(i) {
            self.index.insert(f.clone(), n);
        }
        true
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

#[derive(Clone, Debug)]
struct Entry {
    value: Value,
    expires: Option<Instant>,
}

/// All databases of one server.
#[derive(Debug)]
pub struct Store {
    dbs: Vec<HashMap<Vec<u8>, Entry>>,
    started: Instant,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    pub fn new() -> Store {
        Store {
            dbs: (0..DATABASES).map(|_| HashMap::new()).collect(),
            started: Instant::now(),
        }
    }

    fn db(&mut self, index: usize) -> &mut HashMap<Vec<u8>, Entry> {
        let last = self.dbs.len() - 1;
        &mut self.dbs[index.min(last)]
    }

    /// The live entry of `key`, dropping it first if it has expired (Redis's lazy expiry).
    fn live(&mut self, db: usize, key: &[u8], now: Instant) -> Option<&mut Entry> {
        let map = self.db(db);
        if map
            .get(key)
            .is_some_and(|e| e.expires.is_some_and(|t| t <= now))
        {
            map.remove(key);
        }
        map.get_mut(key)
    }

    /// Expired keys out of every database.
    fn purge(&mut self, now: Instant) {
        for db in &mut self.dbs {
            db.retain(|_, e| e.expires.is_none_or(|t| t > now));
        }
    }

    /// `(keys, keys with an expiry)` of each non-empty database, for `INFO keyspace`.
    fn keyspace(&mut self, now: Instant) -> Vec<(usize, usize, usize)> {
        self.purge(now);
        self.dbs
            .iter()
            .enumerate()
            .filter(|(_, db)| !db.is_empty())
            .map(|(i, db)| {
                (
                    i,
                    db.len(),
                    db.values().filter(|e| e.expires.is_some()).count(),
                )
            })
            .collect()
    }
}

/// One client's state.
#[derive(Clone, Debug, Default)]
pub struct Session {
    pub db: usize,
    pub id: u64,
    pub name: Option<Vec<u8>>,
    /// `QUIT` was received: answer, then close.
    pub closing: bool,
}

/// Facts about the server that `INFO` and `HELLO` report.
#[derive(Clone, Debug)]
pub struct ServerInfo {
    pub version: String,
    pub port: u16,
    pub connected_clients: usize,
}

/// `(name, arity)` as in Redis's command table: a positive arity is exact, a negative one a
/// minimum, both counting the command name.
const COMMANDS: &[(&str, i32)] = &[
    ("ping", -1),
    ("echo", 2),
    ("get", 2),
    ("set", -3),
    ("setnx", 3),
    ("mget", -2),
    ("del", -2),
    ("unlink", -2),
    ("exists", -2),
    ("type", 2),
    ("incr", 2),
    ("decr", 2),
    ("incrby", 3),
    ("decrby", 3),
    ("expire", 3),
    ("pexpire", 3),
    ("ttl", 2),
    ("pttl", 2),
    ("persist", 2),
    ("hset", -4),
    ("hmset", -4),
    ("hget", 3),
    ("hdel", -3),
    ("hexists", 3),
    ("hlen", 2),
    ("hgetall", 2),
    ("hkeys", 2),
    ("hvals", 2),
    ("keys", 2),
    ("dbsize", 1),
    ("flushall", -1),
    ("flushdb", -1),
    ("select", 2),
    ("info", -1),
    ("command", -1),
    ("client", -2),
    ("config", -2),
    ("hello", -1),
    ("time", 1),
    ("quit", -1),
];

/// Redis's answer to a command it does not have, with the first arguments quoted.
pub fn unknown_command(args: &[Vec<u8>]) -> String {
    let name = args.first().map(|n| lossy(n)).unwrap_or_default();
    let mut rest = String::new();
    for a in args.iter().skip(1) {
        if rest.len() >= 128 {
            break;
        }
        let room = 128 - rest.len();
        let text: String = lossy(a).chars().take(room).collect();
        rest.push_str(&format!("'{text}' "));
    }
    let name: String = name.chars().take(128).collect();
    format!("ERR unknown command '{name}', with args beginning with: {rest}")
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn wrong_arity(name: &str) -> Reply {
    Reply::error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

fn integer(arg: &[u8]) -> Result<i64, Reply> {
    parse_i64_strict(arg).ok_or_else(|| Reply::error(NOT_INTEGER))
}

fn count(n: usize) -> Reply {
    Reply::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Runs one command.
pub fn execute(
    store: &mut Store,
    session: &mut Session,
    info: &ServerInfo,
    args: &[Vec<u8>],
) -> Reply {
    let Some(first) = args.first() else {
        return Reply::error(unknown_command(args));
    };
    let name = lossy(first).to_ascii_lowercase();
    let Some(&(name, arity)) = COMMANDS.iter().find(|(n, _)| *n == name) else {
        return Reply::error(unknown_command(args));
    };
    let argc = i32::try_from(args.len()).unwrap_or(i32::MAX);
    if (arity > 0 && argc != arity) || (arity < 0 && argc < -arity) {
        return wrong_arity(name);
    }
    let now = Instant::now();
    let db = session.db;
    match run(store, session, info, name, args, now, db) {
        Ok(reply) | Err(reply) => reply,
    }
}

fn run(
    store: &mut Store,
    session: &mut Session,
    info: &ServerInfo,
    name: &str,
    args: &[Vec<u8>],
    now: Instant,
    db: usize,
) -> Result<Reply, Reply> {
    let key = args.get(1).map_or(&[][..], Vec::as_slice);
    Ok(match name {
        "ping" => match args.len() {
            1 => Reply::Simple("PONG".into()),
            2 => Reply::bulk(key),
            _ => wrong_arity(name),
        },
        "echo" => Reply::bulk(key),
        "quit" => {
            session.closing = true;
            Reply::ok()
        }
        "get" => match store.live(db, key, now) {
            None => Reply::Nil,
            Some(Entry {
                value: Value::Str(s),
                ..
            }) => Reply::bulk(s.clone()),
            Some(_) => return Err(Reply::error(WRONGTYPE)),
        },
        "mget" => Reply::Array(
            args[1..]
                .iter()
                .map(|k| match store.live(db, k, now) {
                    Some(Entry {
                        value: Value::Str(s),
                        ..
                    }) => Reply::bulk(s.clone()),
                    _ => Reply::Nil,
                })
                .collect(),
        ),
        "set" => set(store, db, args, now)?,
        "setnx" => {
            if store.live(db, key, now).is_some() {
                Reply::Integer(0)
            } else {
                store.db(db).insert(
                    key.to_vec(),
                    Entry {
                        value: Value::Str(args[2].clone()),
                        expires: None,
                    },
                );
                Reply::Integer(1)
            }
        }
        "del" | "unlink" => {
            let mut n = 0;
            for k in &args[1..] {
                if store.live(db, k, now).is_some() {
                    store.db(db).remove(k.as_slice());
                    n += 1;
                }
            }
            count(n)
        }
        "exists" => count(
            args[1..]
                .iter()
                .filter(|k| store.live(db, k, now).is_some())
                .count(),
        ),
        "type" => Reply::Simple(
            match store.live(db, key, now).map(|e| &e.value) {
                None => "none",
                Some(Value::Str(_)) => "string",
                Some(Value::Hash(_)) => "hash",
            }
            .into(),
        ),
        "incr" => incr_by(store, db, key, 1, now)?,
        "decr" => incr_by(store, db, key, -1, now)?,
        "incrby" => incr_by(store, db, key, integer(&args[2])?, now)?,
        "decrby" => {
            let by = integer(&args[2])?;
            let by = by
                .checked_neg()
                .ok_or_else(|| Reply::error("ERR decrement would overflow"))?;
            incr_by(store, db, key, by, now)?
        }
        "expire" | "pexpire" => {
            let amount = integer(&args[2])?;
            let millis = if name == "expire" {
                amount.checked_mul(1000)
            } else {
                Some(amount)
            }
            .ok_or_else(|| Reply::error(format!("ERR invalid expire time in '{name}' command")))?;
            match store.live(db, key, now) {
                None => Reply::Integer(0),
                Some(_) if millis <= 0 => {
                    store.db(db).remove(key);
                    Reply::Integer(1)
                }
                Some(e) => {
                    e.expires = Some(now + Duration::from_millis(millis.unsigned_abs()));
                    Reply::Integer(1)
                }
            }
        }
        "ttl" | "pttl" => match store.live(db, key, now) {
            None => Reply::Integer(-2),
            Some(Entry { expires: None, .. }) => Reply::Integer(-1),
            Some(Entry {
                expires: Some(t), ..
            }) => {
                let left = t.saturating_duration_since(now);
                let n = if name == "ttl" {
                    // Redis rounds to the nearest second.
                    (left.as_millis() + 500) / 1000
                } else {
                    left.as_millis()
                };
                Reply::Integer(i64::try_from(n).unwrap_or(i64::MAX))
            }
        },
        "persist" => match store.live(db, key, now) {
            Some(e) if e.expires.is_some() => {
                e.expires = None;
                Reply::Integer(1)
            }
            _ => Reply::Integer(0),
        },
        "hset" | "hmset" => {
            if !args.len().is_multiple_of(2) {
                return Err(wrong_arity(name));
            }
            let hash = hash_for_write(store, db, key, now)?;
            let added = args[2..]
                .chunks(2)
                .filter(|pair| hash.set(&pair[0], &pair[1]))
                .count();
            if name == "hset" {
                count(added)
            } else {
                Reply::ok()
            }
        }
        "hget" => match hash_for_read(store, db, key, now)?.and_then(|h| h.get(&args[2])) {
            Some(v) => Reply::bulk(v),
            None => Reply::Nil,
        },
        "hexists" => Reply::Integer(i64::from(
            hash_for_read(store, db, key, now)?.is_some_and(|h| h.get(&args[2]).is_some()),
        )),
        "hdel" => {
            let removed = match store.live(db, key, now) {
                None => 0,
                Some(Entry {
                    value: Value::Hash(h),
                    ..
                }) => args[2..].iter().filter(|f| h.remove(f)).count(),
                Some(_) => return Err(Reply::error(WRONGTYPE)),
            };
            if store
                .live(db, key, now)
                .is_some_and(|e| matches!(&e.value, Value::Hash(h) if h.is_empty()))
            {
                store.db(db).remove(key);
            }
            count(removed)
        }
        "hlen" => count(hash_for_read(store, db, key, now)?.map_or(0, Hash::len)),
        "hgetall" | "hkeys" | "hvals" => {
            let hash = hash_for_read(store, db, key, now)?;
            let mut items = Vec::new();
            for (f, v) in hash.map(|h| h.fields.as_slice()).unwrap_or_default() {
                if name != "hvals" {
                    items.push(Reply::bulk(f.clone()));
                }
                if name != "hkeys" {
                    items.push(Reply::bulk(v.clone()));
                }
            }
            Reply::Array(items)
        }
        "keys" => {
            store.purge(now);
            let mut keys: Vec<&Vec<u8>> =
                store.db(db).keys().filter(|k| glob_match(key, k)).collect();
            keys.sort();
            Reply::Array(keys.into_iter().map(|k| Reply::bulk(k.clone())).collect())
        }
        "dbsize" => {
            store.purge(now);
            count(store.db(db).len())
        }
        "flushall" | "flushdb" => {
            if let Some(mode) = args.get(1) {
                let mode = lossy(mode).to_ascii_lowercase();
                if args.len() > 2 || (mode != "async" && mode != "sync") {
                    return Err(Reply::error(SYNTAX));
                }
            }
            if name == "flushall" {
                store.dbs.iter_mut().for_each(HashMap::clear);
            } else {
                store.db(db).clear();
            }
            Reply::ok()
        }
        "select" => {
            let index = integer(key)?;
            match usize::try_from(index) {
                Ok(i) if i < DATABASES => {
                    session.db = i;
                    Reply::ok()
                }
                _ => return Err(Reply::error("ERR DB index is out of range")),
            }
        }
        "info" => Reply::bulk(info_text(store, info, args.get(1), now)),
        "time" => {
            let since = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            Reply::Array(vec![
                Reply::bulk(since.as_secs().to_string()),
                Reply::bulk(since.subsec_micros().to_string()),
            ])
        }
        "command" => match args
            .get(1)
            .map(|s| lossy(s).to_ascii_lowercase())
            .as_deref()
        {
            // `redis-cli` asks for COMMAND DOCS at start-up for its hints; an empty answer
            // only means no hints.
            None | Some("docs") | Some("info") => Reply::Array(vec![]),
            Some("count") => count(COMMANDS.len()),
            Some(_) => return Err(unknown_subcommand(args)),
        },
        "client" => match lossy(key).to_ascii_lowercase().as_str() {
            "setname" if args.len() == 3 => {
                session.name = Some(args[2].clone());
                Reply::ok()
            }
            "getname" if args.len() == 2 => session.name.clone().map_or(Reply::Nil, Reply::Bulk),
            "id" if args.len() == 2 => Reply::Integer(i64::try_from(session.id).unwrap_or(0)),
            "setinfo" if args.len() == 4 => Reply::ok(),
            "info" if args.len() == 2 => Reply::bulk(format!(
                "id={} addr=? name={} db={}\n",
                session.id,
                session.name.as_deref().map(lossy).unwrap_or_default(),
                session.db
            )),
            "setname" | "getname" | "id" | "setinfo" | "info" => {
                return Err(Reply::error(format!(
                    "ERR wrong number of arguments for 'client|{}' command",
                    lossy(key).to_ascii_lowercase()
                )));
            }
            _ => return Err(unknown_subcommand(args)),
        },
        "config" => match lossy(key).to_ascii_lowercase().as_str() {
            "get" => Reply::Array(vec![]),
            "set" | "resetstat" | "rewrite" => Reply::ok(),
            _ => return Err(unknown_subcommand(args)),
        },
        "hello" => match args.get(1).map(|v| parse_i64_strict(v)) {
            None | Some(Some(2)) => Reply::Array(vec![
                Reply::bulk("server"),
                Reply::bulk("redis"),
                Reply::bulk("version"),
                Reply::bulk(info.version.clone()),
                Reply::bulk("proto"),
                Reply::Integer(2),
                Reply::bulk("id"),
                Reply::Integer(i64::try_from(session.id).unwrap_or(0)),
                Reply::bulk("mode"),
                Reply::bulk("standalone"),
                Reply::bulk("role"),
                Reply::bulk("master"),
                Reply::bulk("modules"),
                Reply::Array(vec![]),
            ]),
            Some(Some(_)) => {
                return Err(Reply::error(
                    "NOPROTO sorry, this protocol version is not supported.",
                ));
            }
            Some(None) => {
                return Err(Reply::error(
                    "ERR Protocol version is not an integer or out of range",
                ));
            }
        },
        _ => Reply::error(unknown_command(args)),
    })
}

fn unknown_subcommand(args: &[Vec<u8>]) -> Reply {
    let command = args.first().map(|c| lossy(c)).unwrap_or_default();
    let sub = args.get(1).map(|c| lossy(c)).unwrap_or_default();
    Reply::error(format!(
        "ERR unknown subcommand '{sub}'. Try {} HELP.",
        command.to_ascii_uppercase()
    ))
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|KEEPTTL]`.
fn set(store: &mut Store, db: usize, args: &[Vec<u8>], now: Instant) -> Result<Reply, Reply> {
    let (key, value) = (&args[1], &args[2]);
    let (mut nx, mut xx, mut get, mut keep_ttl) = (false, false, false, false);
    let mut expires: Option<Instant> = None;
    let mut i = 3;
    while i < args.len() {
        let option = lossy(&args[i]).to_ascii_lowercase();
        match option.as_str() {
            "nx" if !xx => nx = true,
            "xx" if !nx => xx = true,
            "get" => get = true,
            "keepttl" if expires.is_none() => keep_ttl = true,
            "ex" | "px" if expires.is_none() && !keep_ttl => {
                let amount = args.get(i + 1).ok_or_else(|| Reply::error(SYNTAX))?;
                let amount = integer(amount)?;
                let millis = if option == "ex" {
                    amount.checked_mul(1000)
                } else {
                    Some(amount)
                };
                match millis {
                    Some(ms) if ms > 0 => {
                        expires = Some(now + Duration::from_millis(ms.unsigned_abs()));
                    }
                    _ => return Err(Reply::error("ERR invalid expire time in 'set' command")),
                }
                i += 1;
            }
            _ => return Err(Reply::error(SYNTAX)),
        }
        i += 1;
    }
    let old = store
        .live(db, key, now)
        .map(|e| (e.value.clone(), e.expires));
    let previous = match &old {
        None => Reply::Nil,
        Some((Value::Str(s), _)) => Reply::bulk(s.clone()),
        Some(_) if get => return Err(Reply::error(WRONGTYPE)),
        Some(_) => Reply::Nil,
    };
    if (nx && old.is_some()) || (xx && old.is_none()) {
        return Ok(if get { previous } else { Reply::Nil });
    }
    let expires = if keep_ttl {
        old.and_then(|(_, t)| t)
    } else {
        expires
    };
    store.db(db).insert(
        key.clone(),
        Entry {
            value: Value::Str(value.clone()),
            expires,
        },
    );
    Ok(if get { previous } else { Reply::ok() })
}

fn incr_by(
    store: &mut Store,
    db: usize,
    key: &[u8],
    by: i64,
    now: Instant,
) -> Result<Reply, Reply> {
    let (current, expires) = match store.live(db, key, now) {
        None => (0, None),
        Some(Entry {
            value: Value::Str(s),
            expires,
        }) => (integer(s)?, *expires),
        Some(_) => return Err(Reply::error(WRONGTYPE)),
    };
    let next = current
        .checked_add(by)
        .ok_or_else(|| Reply::error("ERR increment or decrement would overflow"))?;
    store.db(db).insert(
        key.to_vec(),
        Entry {
            value: Value::Str(next.to_string().into_bytes()),
            expires,
        },
    );
    Ok(Reply::Integer(next))
}

fn hash_for_read<'a>(
    store: &'a mut Store,
    db: usize,
    key: &[u8],
    now: Instant,
) -> Result<Option<&'a Hash>, Reply> {
    match store.live(db, key, now) {
        None => Ok(None),
        Some(Entry {
            value: Value::Hash(h),
            ..
        }) => Ok(Some(h)),
        Some(_) => Err(Reply::error(WRONGTYPE)),
    }
}

fn hash_for_write<'a>(
    store: &'a mut Store,
    db: usize,
    key: &[u8],
    now: Instant,
) -> Result<&'a mut Hash, Reply> {
    if store.live(db, key, now).is_none() {
        store.db(db).insert(
            key.to_vec(),
            Entry {
                value: Value::Hash(Hash::default()),
                expires: None,
            },
        );
    }
    match store.live(db, key, now) {
        Some(Entry {
            value: Value::Hash(h),
            ..
        }) => Ok(h),
        _ => Err(Reply::error(WRONGTYPE)),
    }
}

/// The `INFO` text: the sections a monitoring glance or the course looks at.
fn info_text(
    store: &mut Store,
    info: &ServerInfo,
    section: Option<&Vec<u8>>,
    now: Instant,
) -> String {
    let wanted = section.map(|s| lossy(s).to_ascii_lowercase());
    let show = |name: &str| {
        wanted
            .as_deref()
            .is_none_or(|w| w == name || w == "all" || w == "default" || w == "everything")
    };
    let uptime = now.duration_since(store.started).as_secs();
    let mut out = String::new();
    if show("server") {
        let (os, arch) = uname();
        out.push_str(&format!(
            "# Server\r\nredis_version:{version}\r\nredis_git_sha1:00000000\r\nredis_git_dirty:0\r\n\
             redis_build_id:0000000000000000\r\nredis_mode:standalone\r\nos:{os}\r\n\
             arch_bits:64\r\nmonotonic_clock:POSIX clock_gettime\r\nmultiplexing_api:epoll\r\n\
             gcc_version:12.2.0\r\nprocess_id:1\r\nprocess_supervised:no\r\nrun_id:{run_id}\r\n\
             tcp_port:{port}\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{days}\r\n\
             hz:10\r\nconfigured_hz:10\r\nexecutable:/data/redis-server\r\nconfig_file:\r\n\r\n",
            version = info.version,
            run_id = "0".repeat(40),
            port = info.port,
            days = uptime / 86400,
        ));
        let _ = arch;
    }
    if show("clients") {
        out.push_str(&format!(
            "# Clients\r\nconnected_clients:{}\r\nblocked_clients:0\r\n\r\n",
            info.connected_clients
        ));
    }
    if show("persistence") {
        out.push_str("# Persistence\r\nloading:0\r\nrdb_changes_since_last_save:0\r\n\r\n");
    }
    if show("replication") {
        out.push_str("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n\r\n");
    }
    if show("keyspace") {
        out.push_str("# Keyspace\r\n");
        for (db, keys, expires) in store.keyspace(now) {
            out.push_str(&format!(
                "db{db}:keys={keys},expires={expires},avg_ttl=0\r\n"
            ));
        }
    }
    out
}

/// `Linux 6.1.0-18-amd64 x86_64` and the machine name, as Redis's `os:` field shows.
fn uname() -> (String, String) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let arch = std::env::consts::ARCH.to_string();
    (format!("Linux {release} {arch}"), arch)
}

/// Redis's `stringmatchlen`: `*`, `?`, `[abc]`, `[^a]`, `[a-z]` and `\` escapes.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, text index it matched to).
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p + 1, t));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    let (matched, next) = match_class(pattern, p, text[t]);
                    if matched {
                        p = next;
                        t += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() && pattern[p + 1] == text[t] => {
                    p += 2;
                    t += 1;
                    continue;
                }
                // An escaped character that does not match.
                b'\\' if p + 1 < pattern.len() => {}
                c if c == text[t] => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((after, matched_to)) => {
                p = after;
                t = matched_to + 1;
                star = Some((after, matched_to + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class starting at `pattern[open] == '['`: `(matched, index after
/// the class)`. An unclosed class runs to the end of the pattern, as in Redis.
fn match_class(pattern: &[u8], open: usize, c: u8) -> (bool, usize) {
    let mut i = open + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    while i < pattern.len() && pattern[i] != b']' {
        if pattern[i] == b'\\' && i + 1 < pattern.len() {
            matched |= pattern[i + 1] == c;
            i += 2;
        } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
            let (lo, hi) = (
                pattern[i].min(pattern[i + 2]),
                pattern[i].max(pattern[i + 2]),
            );
            matched |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            matched |= pattern[i] == c;
            i += 1;
        }
    }
    let next = (i + 1).min(pattern.len());
    (matched != negate, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Client {
        store: Store,
        session: Session,
        info: ServerInfo,
    }

    impl Client {
        fn new() -> Client {
            Client {
                store: Store::new(),
                session: Session::default(),
                info: ServerInfo {
                    version: "7.4.2".into(),
                    port: 6379,
                    connected_clients: 1,
                },
            }
        }

        fn run(&mut self, line: &str) -> Reply {
            let args = super::super::resp::split_inline_args(line.as_bytes()).unwrap();
            execute(&mut self.store, &mut self.session, &self.info, &args)
        }
    }

    fn bulk(s: &str) -> Reply {
        Reply::bulk(s)
    }

    fn err(s: &str) -> Reply {
        Reply::error(s)
    }

    #[test]
    fn strings_and_counters() {
        let mut c = Client::new();
        assert_eq!(c.run("PING"), Reply::Simple("PONG".into()));
        assert_eq!(c.run("ping hi"), bulk("hi"));
        assert_eq!(c.run("ECHO 'a b'"), bulk("a b"));
        assert_eq!(c.run("GET k"), Reply::Nil);
        assert_eq!(c.run("SET k v"), Reply::ok());
        assert_eq!(c.run("get k"), bulk("v"));
        assert_eq!(c.run("SET k w NX"), Reply::Nil);
        assert_eq!(c.run("SET other w XX"), Reply::Nil);
        assert_eq!(c.run("SET k w XX GET"), bulk("v"));
        assert_eq!(c.run("EXISTS k other k"), Reply::Integer(2));
        assert_eq!(c.run("INCR hashes"), Reply::Integer(1));
        assert_eq!(c.run("INCRBY hashes 41"), Reply::Integer(42));
        assert_eq!(c.run("DECRBY hashes 2"), Reply::Integer(40));
        assert_eq!(c.run("GET hashes"), bulk("40"));
        assert_eq!(c.run("INCR k"), err(NOT_INTEGER));
        assert_eq!(c.run("INCRBY hashes x"), err(NOT_INTEGER));
        assert_eq!(c.run("SET big 9223372036854775807"), Reply::ok());
        assert_eq!(
            c.run("INCR big"),
            err("ERR increment or decrement would overflow")
        );
        assert_eq!(c.run("DEL k hashes nothing"), Reply::Integer(2));
        assert_eq!(c.run("DBSIZE"), Reply::Integer(1));
        assert_eq!(c.run("TYPE big"), Reply::Simple("string".into()));
        assert_eq!(
            c.run("SET k v EX 0"),
            err("ERR invalid expire time in 'set' command")
        );
        assert_eq!(c.run("SET k v FOO"), err(SYNTAX));
        assert_eq!(c.run("SET k v NX XX"), err(SYNTAX));
    }

    #[test]
    fn expiry() {
        let mut c = Client::new();
        assert_eq!(c.run("SET k v PX 30"), Reply::ok());
        assert_eq!(c.run("TTL k"), Reply::Integer(0));
        assert!(matches!(c.run("PTTL k"), Reply::Integer(n) if (1..=30).contains(&n)));
        assert_eq!(c.run("TTL nothing"), Reply::Integer(-2));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(c.run("GET k"), Reply::Nil);
        assert_eq!(c.run("SET k v EX 100"), Reply::ok());
        assert_eq!(c.run("TTL k"), Reply::Integer(100));
        assert_eq!(c.run("INCR n"), Reply::Integer(1));
        assert_eq!(c.run("TTL n"), Reply::Integer(-1));
        assert_eq!(c.run("EXPIRE n 5"), Reply::Integer(1));
        assert_eq!(c.run("PERSIST n"), Reply::Integer(1));
        assert_eq!(c.run("TTL n"), Reply::Integer(-1));
    }

    #[test]
    fn hashes_like_the_wallet() {
        let mut c = Client::new();
        assert_eq!(c.run("HSET wallet a 1 b 2"), Reply::Integer(2));
        assert_eq!(c.run("HSET wallet a 3 c 4"), Reply::Integer(1));
        assert_eq!(c.run("HLEN wallet"), Reply::Integer(3));
        assert_eq!(c.run("HLEN nothing"), Reply::Integer(0));
        assert_eq!(c.run("HGET wallet a"), bulk("3"));
        assert_eq!(c.run("HGET wallet z"), Reply::Nil);
        assert_eq!(
            c.run("HGETALL wallet"),
            Reply::Array(["a", "3", "b", "2", "c", "4"].map(bulk).to_vec())
        );
        assert_eq!(c.run("HDEL wallet a z"), Reply::Integer(1));
        assert_eq!(
            c.run("HKEYS wallet"),
            Reply::Array(["b", "c"].map(bulk).to_vec())
        );
        assert_eq!(
            c.run("HSET wallet a"),
            err("ERR wrong number of arguments for 'hset' command")
        );
        assert_eq!(
            c.run("HSET wallet a 1 b"),
            err("ERR wrong number of arguments for 'hset' command")
        );
        assert_eq!(c.run("TYPE wallet"), Reply::Simple("hash".into()));
        assert_eq!(c.run("GET wallet"), err(WRONGTYPE));
        assert_eq!(c.run("INCR wallet"), err(WRONGTYPE));
        c.run("SET s x");
        assert_eq!(c.run("HSET s f v"), err(WRONGTYPE));
        assert_eq!(c.run("HLEN s"), err(WRONGTYPE));
        assert_eq!(c.run("HGETALL s"), err(WRONGTYPE));
        assert_eq!(c.run("HDEL wallet b c"), Reply::Integer(2));
        assert_eq!(c.run("EXISTS wallet"), Reply::Integer(0));
    }

    #[test]
    fn keys_databases_and_flush() {
        let mut c = Client::new();
        for k in ["hashes", "wallet", "hello", "hallo", "h[x]"] {
            c.run(&format!("SET {k} 1"));
        }
        let keys = |c: &mut Client, p: &str| c.run(&format!("KEYS {p}"));
        assert_eq!(
            keys(&mut c, "h?llo"),
            Reply::Array(["hallo", "hello"].map(bulk).to_vec())
        );
        assert_eq!(keys(&mut c, "*s"), Reply::Array(vec![bulk("hashes")]));
        assert!(keys(&mut c, "*").to_bytes().starts_with(b"*5\r\n"));
        assert_eq!(c.run("SELECT 1"), Reply::ok());
        assert_eq!(c.run("DBSIZE"), Reply::Integer(0));
        assert_eq!(c.run("SELECT 16"), err("ERR DB index is out of range"));
        assert_eq!(c.run("SELECT x"), err(NOT_INTEGER));
        assert_eq!(c.run("SELECT 0"), Reply::ok());
        assert!(
            matches!(c.run("INFO"), Reply::Bulk(b) if String::from_utf8_lossy(&b).contains("db0:keys=5,expires=0"))
        );
        assert_eq!(c.run("FLUSHALL"), Reply::ok());
        assert_eq!(c.run("DBSIZE"), Reply::Integer(0));
    }

    #[test]
    fn glob_patterns() {
        let m = |p: &str, t: &str| glob_match(p.as_bytes(), t.as_bytes());
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("h*o", "hello"));
        assert!(m("h*l*o", "hellllo"));
        assert!(!m("h*x", "hello"));
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-f]llo", "hello"));
        assert!(m("h\\*", "h*"));
        assert!(!m("h\\*", "hx"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
    }

    #[test]
    fn unknown_and_connection_commands() {
        let mut c = Client::new();
        assert_eq!(
            c.run("FOO"),
            err("ERR unknown command 'FOO', with args beginning with: ")
        );
        assert_eq!(
            c.run("lpush list a b"),
            err("ERR unknown command 'lpush', with args beginning with: 'list' 'a' 'b' ")
        );
        assert_eq!(
            c.run("GET"),
            err("ERR wrong number of arguments for 'get' command")
        );
        assert_eq!(c.run("COMMAND DOCS"), Reply::Array(vec![]));
        assert_eq!(c.run("CLIENT SETNAME me"), Reply::ok());
        assert_eq!(c.run("CLIENT GETNAME"), bulk("me"));
        assert_eq!(c.run("CLIENT SETINFO LIB-NAME redis-py"), Reply::ok());
        assert_eq!(
            c.run("CLIENT NOPE"),
            err("ERR unknown subcommand 'NOPE'. Try CLIENT HELP.")
        );
        assert!(matches!(c.run("HELLO 2"), Reply::Array(_)));
        assert_eq!(
            c.run("HELLO 3"),
            err("NOPROTO sorry, this protocol version is not supported.")
        );
        assert_eq!(c.run("QUIT"), Reply::ok());
        assert!(c.session.closing);
        let Reply::Bulk(info) = c.run("INFO server") else {
            panic!("INFO is a bulk string")
        };
        let info = String::from_utf8(info).unwrap();
        assert!(info.starts_with("# Server\r\nredis_version:7.4.2\r\n"));
        assert!(info.contains("tcp_port:6379\r\n"));
        assert!(!info.contains("# Keyspace"));
    }
}
