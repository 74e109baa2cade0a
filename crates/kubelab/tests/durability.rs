//! Crash safety: concurrent clients create ConfigMaps while the server is SIGKILLed; after a
//! restart on the same data directory every write the server acknowledged (201) is there with
//! the data sent, revisions keep growing, and a watch from before the crash either resumes
//! without a gap or says 410 Expired — it never silently misses an event.

mod support;

use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use support::{ApiClient, TestServer};

const CM: &str = "/api/v1/namespaces/default/configmaps";
const WRITERS: usize = 8;
const CYCLES: usize = 3;

/// A create the server answered 201 to.
#[derive(Clone, Debug)]
struct Acked {
    name: String,
    payload: String,
    rv: u64,
}

fn rv_of(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no numeric resourceVersion in {v}"))
}

/// Writers create ConfigMaps until `stop`, recording every acknowledged one; errors (the
/// server being killed under them) end nothing but that one request.
fn start_writers(
    api: &ApiClient,
    cycle: usize,
    stop: &Arc<AtomicBool>,
    acked: &Arc<Mutex<Vec<Acked>>>,
) -> Vec<thread::JoinHandle<usize>> {
    (0..WRITERS)
        .map(|w| {
            let api = api.clone();
            let stop = stop.clone();
            let acked = acked.clone();
            thread::spawn(move || {
                let mut attempts = 0;
                let mut seq = 0;
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    attempts += 1;
                    let name = format!("c{cycle}-w{w}-{seq}");
                    let payload = format!("cycle {cycle} writer {w} write {seq}: {}", "x".repeat(seq % 200));
                    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"payload": payload}});
                    match api.try_send("POST", CM, Some("application/json"), Some(body.to_string().into_bytes())) {
                        Ok(r) if r.status == 201 => {
                            let rv = rv_of(&r.json());
                            acked.lock().expect("acked").push(Acked { name, payload, rv });
                        }
                        Ok(r) => panic!("create {name}: HTTP {}: {}", r.status, r.text()),
                        // Killed mid-request: not acknowledged, so nothing is promised.
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
                attempts
            })
        })
        .collect()
}

/// Every acknowledged ConfigMap is stored with its data, and the revision never went back.
fn assert_all_acked_present(api: &ApiClient, acked: &[Acked], cycle: usize) {
    let list = api.get(CM);
    assert_eq!(list.status, 200, "{}", list.text());
    let list = list.json();
    let stored: HashMap<String, &Value> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| (i["metadata"]["name"].as_str().unwrap_or("").to_string(), i))
        .collect();
    let missing: Vec<&str> = acked
        .iter()
        .filter(|a| !stored.contains_key(&a.name))
        .map(|a| a.name.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "cycle {cycle}: {} of {} acknowledged creates lost after SIGKILL: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(20)]
    );
    for a in acked {
        let item = stored[&a.name];
        assert_eq!(
            item["data"]["payload"], a.payload,
            "cycle {cycle}: {} has other data after restart",
            a.name
        );
        assert_eq!(
            rv_of(item),
            a.rv,
            "cycle {cycle}: {} has another resourceVersion after restart",
            a.name
        );
    }
    let list_rv: u64 = list["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("list resourceVersion");
    let max_acked = acked.iter().map(|a| a.rv).max().unwrap_or(0);
    assert!(
        list_rv >= max_acked,
        "cycle {cycle}: list resourceVersion {list_rv} is below acknowledged {max_acked}"
    );
}

/// A watch from `from_rv` (taken before the crash) either resumes — every acknowledged create
/// after it arrives as ADDED — or ends with a 410 Expired ERROR event. Like a client, it
/// watches again from the last revision seen when a watch times out. Returns what happened.
fn assert_watch_resumes_or_expires(api: &ApiClient, from_rv: u64, acked: &[Acked]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut added: HashMap<String, u64> = HashMap::new();
    let mut last_rv = from_rv;
    loop {
        let path = format!("{CM}?watch=true&resourceVersion={last_rv}&timeoutSeconds=2");
        let resp = api.stream(&path);
        assert_eq!(resp.status().as_u16(), 200, "watch from {last_rv}");
        let mut events = 0;
        for line in BufReader::new(resp).lines() {
            assert!(
                Instant::now() < deadline,
                "watching from {from_rv} did not catch up in 30s"
            );
            let line = line.expect("watch stream");
            if line.trim().is_empty() {
                continue;
            }
            let ev: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("watch line is not JSON ({e}): {line}"));
            if ev["type"] == "ERROR" {
                assert!(events == 0, "ERROR after events: {line}");
                assert_eq!(
                    (
                        ev["object"]["code"].as_u64(),
                        ev["object"]["reason"].as_str()
                    ),
                    (Some(410), Some("Expired")),
                    "{line}"
                );
                return format!("watch from {from_rv}: 410 Expired");
            }
            events += 1;
            let rv = rv_of(&ev["object"]);
            assert!(
                rv > last_rv,
                "watch from {last_rv} sent an event of revision {rv}: {line}"
            );
            last_rv = rv;
            if ev["type"] == "ADDED" {
                added.insert(
                    ev["object"]["metadata"]["name"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    rv,
                );
            }
        }
        if events == 0 {
            break;
        }
    }
    let missed: Vec<&str> = acked
        .iter()
        .filter(|a| a.rv > from_rv && !added.contains_key(&a.name))
        .map(|a| a.name.as_str())
        .collect();
    assert!(
        missed.is_empty(),
        "watch resumed from {from_rv} but silently missed {} acknowledged creates: {:?}",
        missed.len(),
        &missed[..missed.len().min(20)]
    );
    format!("watch from {from_rv}: resumed, {} ADDED", added.len())
}

#[test]
fn sigkill_during_writes_loses_no_acknowledged_write() {
    let mut server = TestServer::start();
    let mut all_acked: Vec<Acked> = Vec::new();
    for cycle in 0..CYCLES {
        let api = server.api();
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let writers = start_writers(&api, cycle, &stop, &acked);
        thread::sleep(Duration::from_millis(1500));
        // Crash while the writers are mid-request.
        server.kill();
        stop.store(true, Ordering::Relaxed);
        let attempts: usize = writers
            .into_iter()
            .map(|w| w.join().expect("writer thread"))
            .sum();
        let this_cycle = acked.lock().expect("acked").clone();
        assert!(
            this_cycle.len() > 20,
            "cycle {cycle}: only {} of {attempts} creates acknowledged before the kill",
            this_cycle.len()
        );
        // A revision from the middle of the cycle, for the watch after the restart.
        let mut revs: Vec<u64> = this_cycle.iter().map(|a| a.rv).collect();
        revs.sort_unstable();
        let watch_from = revs[revs.len() / 2];
        all_acked.extend(this_cycle);

        server.restart();
        let api = server.api();
        assert_all_acked_present(&api, &all_acked, cycle);
        let watched = assert_watch_resumes_or_expires(&api, watch_from, &all_acked);

        // Revisions continue above everything acknowledged before the crash.
        let max_acked = all_acked.iter().map(|a| a.rv).max().unwrap_or(0);
        let probe = api.send_json(
            "POST",
            CM,
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("after-restart-{cycle}")}}),
        );
        assert_eq!(probe.status, 201, "{}", probe.text());
        let probe_rv = rv_of(&probe.json());
        assert!(
            probe_rv > max_acked,
            "cycle {cycle}: first write after restart got revision {probe_rv}, not above acknowledged {max_acked}"
        );
        eprintln!(
            "cycle {cycle}: {} acknowledged of {attempts} attempts; {} acknowledged in all; {watched}",
            revs.len(),
            all_acked.len()
        );
    }
}
