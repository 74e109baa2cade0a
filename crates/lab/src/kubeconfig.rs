//! Merging a lab's cluster, user and context into the user's kubeconfig and taking them out
//! again, as kind does: entries of other clusters stay as they were, the file stays YAML, and it
//! is replaced atomically with mode 0600 (it holds a client key).
//!
//! The merge works on the document as a JSON value, so fields kubelab does not know (a user's
//! `exec` plugin, `extensions`, `preferences`) survive untouched; comments do not.

use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a kubeconfig: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("cannot write YAML: {0}")]
    Render(String),
}

/// The kubeconfig `kubectl` reads by default: the first path of `$KUBECONFIG` if set, else
/// `~/.kube/config` (`home` is `$HOME`).
pub fn default_path(kubeconfig_env: Option<&str>, home: &Path) -> PathBuf {
    kubeconfig_env
        .and_then(|v| v.split(':').find(|p| !p.is_empty()))
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".kube").join("config"))
}

fn named<'a>(doc: &'a Value, list: &str, name: &str) -> Option<&'a Value> {
    doc.get(list)?
        .as_array()?
        .iter()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
}

/// Parses a kubeconfig (YAML or JSON); an empty file is an empty document.
pub fn parse(text: &str, path: &Path) -> Result<Value, KubeconfigError> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let value: Value = serde_saphyr::from_str(text).map_err(|e| KubeconfigError::Parse {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    match value {
        Value::Object(_) => Ok(value),
        Value::Null => Ok(Value::Object(Map::new())),
        _ => Err(KubeconfigError::Parse {
            path: path.to_path_buf(),
            reason: "the document is not a mapping".into(),
        }),
    }
}

/// Puts `entry` into `list` of `doc`, replacing an entry of the same name in place.
fn upsert(doc: &mut Map<String, Value>, list: &str, entry: Value) {
    let name = entry.get("name").cloned();
    let slot = doc
        .entry(list.to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    if let Value::Array(items) = slot {
        match items.iter_mut().find(|e| e.get("name") == name.as_ref()) {
            Some(existing) => *existing = entry,
            None => items.push(entry),
        }
    }
}

fn remove_named(doc: &mut Map<String, Value>, list: &str, name: &str) {
    if let Some(Value::Array(items)) = doc.get_mut(list) {
        items.retain(|e| e.get("name").and_then(Value::as_str) != Some(name));
    }
}

/// `existing` with the cluster, user and context called `name` taken from `lab` (a kubeconfig
/// whose entries all carry that name), and `current-context` set to it.
pub fn merge(existing: Value, lab: &Value, name: &str) -> Result<Value, String> {
    let mut doc = match existing {
        Value::Object(m) if !m.is_empty() => m,
        // A new file starts like kubectl's: apiVersion and kind first.
        _ => Map::from_iter([
            ("apiVersion".to_string(), json!("v1")),
            ("kind".to_string(), json!("Config")),
            ("preferences".to_string(), json!({})),
        ]),
    };
    for (list, what) in [
        ("clusters", "cluster"),
        ("users", "user"),
        ("contexts", "context"),
    ] {
        let entry = named(lab, list, name)
            .ok_or_else(|| format!("the lab's kubeconfig has no {what} named {name}"))?;
        upsert(&mut doc, list, entry.clone());
    }
    doc.entry("apiVersion").or_insert(json!("v1"));
    doc.entry("kind").or_insert(json!("Config"));
    doc.entry("preferences").or_insert(json!({}));
    doc.insert("current-context".into(), json!(name));
    Ok(Value::Object(doc))
}

/// `existing` without the cluster, user and context called `name`; `current-context` is
/// emptied if it pointed there (kind does the same).
pub fn remove(existing: Value, name: &str) -> Value {
    let mut doc = match existing {
        Value::Object(m) => m,
        other => return other,
    };
    for list in ["clusters", "users", "contexts"] {
        remove_named(&mut doc, list, name);
    }
    if doc.get("current-context").and_then(Value::as_str) == Some(name) {
        doc.insert("current-context".into(), json!(""));
    }
    Value::Object(doc)
}

/// Whether the document has any of the entries called `name`.
pub fn mentions(doc: &Value, name: &str) -> bool {
    ["clusters", "users", "contexts"]
        .iter()
        .any(|l| named(doc, l, name).is_some())
}

/// The document as YAML, with plain one-line scalars as kubectl writes them (no folded `>-`
/// blocks for long certificate data).
pub fn render(doc: &Value) -> Result<String, KubeconfigError> {
    let options = serde_saphyr::SerializerOptions {
        prefer_block_scalars: false,
        ..Default::default()
    };
    let mut out = String::new();
    serde_saphyr::to_fmt_writer_with_options(&mut out, doc, options)
        .map_err(|e| KubeconfigError::Render(e.to_string()))?;
    Ok(out)
}

/// Reads a kubeconfig file; a missing file is an empty document.
pub fn read(path: &Path) -> Result<Value, KubeconfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Value::Object(Map::new())),
        Err(source) => Err(KubeconfigError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes `contents` to `path` through a temporary file in the same directory and a rename, so
/// a reader never sees half a file; mode 0600.
pub fn write_private(path: &Path, contents: &str) -> Result<(), KubeconfigError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| KubeconfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "kubeconfig".into());
    let tmp = path.with_file_name(format!(".{file_name}.kubelab-{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAB: &str = r#"apiVersion: v1
kind: Config
clusters:
- name: kubelab-t
  cluster:
    server: https://127.0.0.1:40000
    certificate-authority-data: QUJD
users:
- name: kubelab-t
  user:
    client-certificate-data: REVG
    client-key-data: R0hJ
contexts:
- name: kubelab-t
  context:
    cluster: kubelab-t
    user: kubelab-t
current-context: kubelab-t
"#;

    const USER: &str = r#"apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster:
    server: https://prod.example:6443
users:
- name: prod-admin
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: gke-gcloud-auth-plugin
contexts:
- name: prod
  context:
    cluster: prod
    user: prod-admin
    namespace: web
current-context: prod
"#;

    fn p() -> PathBuf {
        PathBuf::from("config")
    }

    #[test]
    fn merge_adds_entries_and_selects_the_context() {
        let lab = parse(LAB, &p()).unwrap();
        let merged = merge(parse(USER, &p()).unwrap(), &lab, "kubelab-t").unwrap();
        assert_eq!(merged["current-context"], "kubelab-t");
        assert_eq!(merged["clusters"].as_array().unwrap().len(), 2);
        assert_eq!(
            merged["users"][0]["user"]["exec"]["command"],
            "gke-gcloud-auth-plugin"
        );
        assert_eq!(merged["contexts"][1]["context"]["cluster"], "kubelab-t");
        // The rendered YAML parses back to the same document.
        let text = render(&merged).unwrap();
        assert_eq!(parse(&text, &p()).unwrap(), merged);
        // One line per certificate, as kubectl writes it.
        assert!(text.contains("certificate-authority-data: QUJD"), "{text}");
        assert!(!text.contains(">-"), "{text}");
    }

    #[test]
    fn merge_replaces_an_entry_of_the_same_name() {
        let lab = parse(LAB, &p()).unwrap();
        let once = merge(Value::Null, &lab, "kubelab-t").unwrap();
        let moved = parse(&LAB.replace("40000", "40001"), &p()).unwrap();
        let twice = merge(once, &moved, "kubelab-t").unwrap();
        assert_eq!(twice["clusters"].as_array().unwrap().len(), 1);
        assert_eq!(
            twice["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:40001"
        );
        assert_eq!(twice["apiVersion"], "v1");
        assert_eq!(twice["kind"], "Config");
    }

    #[test]
    fn remove_restores_the_users_entries() {
        let user = parse(USER, &p()).unwrap();
        let lab = parse(LAB, &p()).unwrap();
        let merged = merge(user.clone(), &lab, "kubelab-t").unwrap();
        assert!(mentions(&merged, "kubelab-t"));
        let removed = remove(merged, "kubelab-t");
        assert!(!mentions(&removed, "kubelab-t"));
        assert_eq!(removed["clusters"], user["clusters"]);
        assert_eq!(removed["users"], user["users"]);
        assert_eq!(removed["contexts"], user["contexts"]);
        // It pointed at the lab: now at nothing.
        assert_eq!(removed["current-context"], "");
    }

    #[test]
    fn remove_keeps_another_current_context() {
        let user = parse(USER, &p()).unwrap();
        assert_eq!(remove(user, "kubelab-t")["current-context"], "prod");
    }

    #[test]
    fn merge_fails_on_a_lab_config_without_the_entries() {
        let lab = parse(LAB, &p()).unwrap();
        assert!(merge(Value::Null, &lab, "kubelab-other").is_err());
    }

    #[test]
    fn default_path_follows_kubeconfig_then_home() {
        let home = Path::new("/home/u");
        assert_eq!(
            default_path(None, home),
            PathBuf::from("/home/u/.kube/config")
        );
        assert_eq!(
            default_path(Some(":/a/one:/b/two"), home),
            PathBuf::from("/a/one")
        );
        assert_eq!(
            default_path(Some(""), home),
            PathBuf::from("/home/u/.kube/config")
        );
    }

    #[test]
    fn write_is_private_and_atomic() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config");
        write_private(&path, "a: 1\n").unwrap();
        write_private(&path, "a: 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a: 2\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            1
        );
    }

    #[test]
    fn read_of_missing_or_empty_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(&dir.path().join("none")).unwrap(), json!({}));
        std::fs::write(dir.path().join("empty"), "").unwrap();
        assert_eq!(read(&dir.path().join("empty")).unwrap(), json!({}));
        std::fs::write(dir.path().join("list"), "- 1\n").unwrap();
        assert!(read(&dir.path().join("list")).is_err());
    }
}
