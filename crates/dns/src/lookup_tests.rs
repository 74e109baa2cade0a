//! The answers of [`lookup`] and [`answer_packet`] for a small cluster, checked against what
//! CoreDNS's kubernetes plugin answers with kubeadm's Corefile.

use super::*;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

fn service(namespace: &str, name: &str, cluster_ip: &str, ports: serde_json::Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterIP": cluster_ip, "clusterIPs": [cluster_ip], "ports": ports},
    }))
    .expect("service")
}

/// `endpoints`: (address, hostname, ready).
fn slice(
    namespace: &str,
    name: &str,
    service: &str,
    ports: serde_json::Value,
    endpoints: &[(&str, Option<&str>, bool)],
) -> EndpointSlice {
    let endpoints: Vec<serde_json::Value> = endpoints
        .iter()
        .map(|(ip, hostname, ready)| {
            let mut e = json!({"addresses": [ip], "conditions": {"ready": ready}});
            if let Some(h) = hostname {
                e["hostname"] = json!(h);
            }
            e
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints,
    }))
    .expect("endpoint slice")
}

fn namespace(name: &str) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace")
}

/// default/web (ClusterIP 10.96.0.20, ports http/80 and metrics/9100 TCP, dns/53 UDP,
/// endpoints 10.244.1.5 ready and 10.244.2.6 not ready), default/db (headless, ready
/// endpoints db-0 at 10.244.1.7 and 10.244.2.8 without hostname, port pg/5432),
/// kube-system/kube-dns (10.96.0.10), default/search (ExternalName www.example.org),
/// default/alias (ExternalName to web.default.svc.cluster.local).
fn cluster() -> Records {
    let services = vec![
        service(
            "default",
            "web",
            "10.96.0.20",
            json!([
                {"name": "http", "port": 80, "protocol": "TCP"},
                {"name": "metrics", "port": 9100, "protocol": "TCP"},
                {"name": "dns", "port": 53, "protocol": "UDP"},
            ]),
        ),
        service(
            "default",
            "db",
            "None",
            json!([{"name": "pg", "port": 5432, "protocol": "TCP"}]),
        ),
        service(
            "kube-system",
            "kube-dns",
            "10.96.0.10",
            json!([{"name": "dns", "port": 53, "protocol": "UDP"}]),
        ),
        serde_json::from_value(json!({
            "metadata": {"name": "search", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "www.example.org"},
        }))
        .expect("service"),
        serde_json::from_value(json!({
            "metadata": {"name": "alias", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "web.default.svc.cluster.local"},
        }))
        .expect("service"),
    ];
    let slices = vec![
        slice(
            "default",
            "web-abcde",
            "web",
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}]),
            &[("10.244.1.5", None, true), ("10.244.2.6", None, false)],
        ),
        slice(
            "default",
            "db-fghij",
            "db",
            json!([{"name": "pg", "port": 5432, "protocol": "TCP"}]),
            &[
                ("10.244.1.7", Some("db-0"), true),
                ("10.244.2.8", None, true),
            ],
        ),
    ];
    let namespaces = vec![
        namespace("default"),
        namespace("kube-system"),
        namespace("empty"),
    ];
    Records::build(&services, &slices, &namespaces, 1_700_000_000)
}

fn query(name: &str, record_type: RecordType) -> Message {
    let mut message = Message::new(4242, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(
        Name::from_ascii(name).expect("name"),
        record_type,
    ));
    message
}

fn ask(records: &Records, name: &str, record_type: RecordType) -> Message {
    let response = lookup(records, &query(name, record_type));
    assert_eq!(response.id, 4242);
    assert_eq!(response.message_type, MessageType::Response);
    assert!(response.recursion_desired, "RD is copied");
    assert!(
        !response.recursion_available,
        "CoreDNS's kubernetes answers say RA=0"
    );
    response
}

fn addresses(response: &Message) -> Vec<String> {
    response
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

fn srv(response: &Message) -> Vec<(u16, u16, u16, String)> {
    response
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.priority, s.weight, s.port, s.target.to_ascii())),
            _ => None,
        })
        .collect()
}

fn names(response: &Message) -> Vec<String> {
    response
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::PTR(p) => Some(p.0.to_ascii()),
            RData::CNAME(c) => Some(c.0.to_ascii()),
            RData::NS(n) => Some(n.0.to_ascii()),
            _ => None,
        })
        .collect()
}

/// NXDOMAIN or NODATA: no answers and the zone's SOA in the authority section.
fn assert_negative(response: &Message, code: ResponseCode, zone: &str) {
    assert_eq!(response.response_code, code, "{response}");
    assert!(response.answers.is_empty(), "{response}");
    assert!(response.authoritative);
    let [soa] = response.authorities.as_slice() else {
        panic!("one SOA in authority: {response}");
    };
    assert_eq!(soa.name.to_ascii(), zone);
    let RData::SOA(data) = &soa.data else {
        panic!("SOA: {soa}");
    };
    assert_eq!(data.mname.to_ascii(), format!("ns.dns.{zone}"));
    assert_eq!(data.rname.to_ascii(), format!("hostmaster.{zone}"));
    assert_eq!(data.serial, 1_700_000_000);
    assert_eq!(
        (data.refresh, data.retry, data.expire, data.minimum),
        (7200, 1800, 86400, 30)
    );
    assert_eq!(soa.ttl, 30);
}

#[test]
fn a_record_of_a_cluster_ip_service() {
    let response = ask(&cluster(), "web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(response.response_code, ResponseCode::NoError);
    assert!(response.authoritative);
    assert_eq!(
        addresses(&response),
        ["10.96.0.20"],
        "one A despite three ports"
    );
    assert_eq!(response.answers[0].ttl, 30);
    assert_eq!(
        response.answers[0].name.to_ascii(),
        "web.default.svc.cluster.local."
    );
}

#[test]
fn names_match_without_case_and_answers_keep_the_question_spelling() {
    let response = ask(&cluster(), "WEB.Default.SVC.Cluster.LOCAL.", RecordType::A);
    assert_eq!(addresses(&response), ["10.96.0.20"]);
    assert_eq!(
        response.answers[0].name.to_ascii(),
        "WEB.Default.SVC.Cluster.LOCAL."
    );
    let srv = ask(
        &cluster(),
        "_HTTP._Tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(srv.answers.len(), 1);
}

#[test]
fn headless_service_resolves_to_its_ready_endpoints() {
    let response = ask(&cluster(), "db.default.svc.cluster.local.", RecordType::A);
    assert_eq!(addresses(&response), ["10.244.1.7", "10.244.2.8"]);
}

#[test]
fn endpoint_names_by_hostname_or_dashed_address() {
    let records = cluster();
    let named = ask(
        &records,
        "db-0.db.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(addresses(&named), ["10.244.1.7"]);
    let dashed = ask(
        &records,
        "10-244-2-8.db.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(addresses(&dashed), ["10.244.2.8"]);
    // Endpoints of a ClusterIP Service have names too; not-ready ones do not.
    let web = ask(
        &records,
        "10-244-1-5.web.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(addresses(&web), ["10.244.1.5"]);
    let not_ready = ask(
        &records,
        "10-244-2-6.web.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_negative(&not_ready, ResponseCode::NXDomain, "cluster.local.");
    let missing = ask(
        &records,
        "db-9.db.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_negative(&missing, ResponseCode::NXDomain, "cluster.local.");
}

#[test]
fn srv_of_a_named_port() {
    let response = ask(
        &cluster(),
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(
        srv(&response),
        [(0, 100, 80, "web.default.svc.cluster.local.".to_string())]
    );
    assert_eq!(response.answers[0].ttl, 30);
    let [glue] = response.additionals.as_slice() else {
        panic!("the target's A in additional: {response}");
    };
    assert_eq!(glue.name.to_ascii(), "web.default.svc.cluster.local.");
    assert!(matches!(&glue.data, RData::A(a) if a.0.to_string() == "10.96.0.20"));

    let udp = ask(
        &cluster(),
        "_dns._udp.web.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(srv(&udp)[0].2, 53);
    // A protocol the port does not have: no such name.
    let wrong = ask(
        &cluster(),
        "_dns._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_negative(&wrong, ResponseCode::NXDomain, "cluster.local.");
}

#[test]
fn srv_of_a_service_name_lists_every_port() {
    let response = ask(
        &cluster(),
        "web.default.svc.cluster.local.",
        RecordType::SRV,
    );
    let mut ports: Vec<u16> = srv(&response).iter().map(|s| s.2).collect();
    ports.sort_unstable();
    assert_eq!(ports, [53, 80, 9100]);
    assert!(
        srv(&response).iter().all(|s| s.1 == 33),
        "100 split three ways"
    );
}

#[test]
fn srv_of_a_headless_service_has_one_record_per_endpoint() {
    let response = ask(
        &cluster(),
        "_pg._tcp.db.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(
        srv(&response),
        [
            (
                0,
                50,
                5432,
                "db-0.db.default.svc.cluster.local.".to_string()
            ),
            (
                0,
                50,
                5432,
                "10-244-2-8.db.default.svc.cluster.local.".to_string()
            ),
        ]
    );
    let glue: Vec<(String, String)> = response
        .additionals
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some((r.name.to_ascii(), a.0.to_string())),
            _ => None,
        })
        .collect();
    assert_eq!(
        glue,
        [
            (
                "db-0.db.default.svc.cluster.local.".to_string(),
                "10.244.1.7".to_string()
            ),
            (
                "10-244-2-8.db.default.svc.cluster.local.".to_string(),
                "10.244.2.8".to_string()
            ),
        ]
    );
}

#[test]
fn ptr_for_cluster_ips_and_endpoint_addresses() {
    let records = cluster();
    let service = ask(&records, "20.0.96.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(names(&service), ["web.default.svc.cluster.local."]);
    assert_eq!(service.answers[0].ttl, 30);
    let dns = ask(&records, "10.0.96.10.IN-ADDR.ARPA.", RecordType::PTR);
    assert_eq!(names(&dns), ["kube-dns.kube-system.svc.cluster.local."]);
    let endpoint = ask(&records, "7.1.244.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(names(&endpoint), ["db-0.db.default.svc.cluster.local."]);
    let dashed = ask(&records, "5.1.244.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(
        names(&dashed),
        ["10-244-1-5.web.default.svc.cluster.local."]
    );
    // A pod IP that backs no Service, and a not-ready endpoint: no PTR (CoreDNS would
    // fall through to its upstream; we have none).
    for unknown in ["9.9.244.10.in-addr.arpa.", "6.2.244.10.in-addr.arpa."] {
        let response = ask(&records, unknown, RecordType::PTR);
        assert_negative(&response, ResponseCode::NXDomain, "in-addr.arpa.");
    }
    let partial = ask(&records, "244.10.in-addr.arpa.", RecordType::PTR);
    assert_negative(&partial, ResponseCode::NXDomain, "in-addr.arpa.");
}

#[test]
fn pod_records_in_insecure_mode() {
    let records = cluster();
    let pod = ask(
        &records,
        "10-244-3-9.default.pod.cluster.local.",
        RecordType::A,
    );
    assert_eq!(addresses(&pod), ["10.244.3.9"], "no pod needs to exist");
    let v6 = ask(
        &records,
        "fd00--5.default.pod.cluster.local.",
        RecordType::AAAA,
    );
    assert_eq!(addresses(&v6), ["fd00::5"]);
    let other_family = ask(
        &records,
        "10-244-3-9.default.pod.cluster.local.",
        RecordType::AAAA,
    );
    assert_negative(&other_family, ResponseCode::NoError, "cluster.local.");
    for missing in [
        "10-244-3-9.nosuchns.pod.cluster.local.",
        "10-244-3-999.default.pod.cluster.local.",
        "web.default.pod.cluster.local.",
    ] {
        let response = ask(&records, missing, RecordType::A);
        assert_negative(&response, ResponseCode::NXDomain, "cluster.local.");
    }
}

#[test]
fn unknown_names_are_nxdomain_with_the_zone_soa() {
    let records = cluster();
    for name in [
        "nosuch.default.svc.cluster.local.",
        "web.nosuchns.svc.cluster.local.",
        "web.default.nosuch.cluster.local.",
        "a.b.c.web.default.svc.cluster.local.",
    ] {
        let response = ask(&records, name, RecordType::A);
        assert_negative(&response, ResponseCode::NXDomain, "cluster.local.");
    }
    // Other types of unknown names too.
    let mx = ask(
        &records,
        "nosuch.default.svc.cluster.local.",
        RecordType::MX,
    );
    assert_negative(&mx, ResponseCode::NXDomain, "cluster.local.");
}

#[test]
fn existing_names_without_the_type_are_nodata() {
    let records = cluster();
    for (name, record_type) in [
        ("web.default.svc.cluster.local.", RecordType::AAAA),
        ("web.default.svc.cluster.local.", RecordType::MX),
        ("default.svc.cluster.local.", RecordType::A),
        ("empty.svc.cluster.local.", RecordType::A),
        ("svc.cluster.local.", RecordType::A),
        ("cluster.local.", RecordType::A),
    ] {
        let response = ask(&records, name, record_type);
        assert_negative(&response, ResponseCode::NoError, "cluster.local.");
    }
}

#[test]
fn names_outside_the_cluster_are_refused() {
    for name in ["example.com.", "kubernetes.io.", "cluster.local.example."] {
        let response = ask(&cluster(), name, RecordType::A);
        assert_eq!(response.response_code, ResponseCode::Refused, "{name}");
        assert!(response.answers.is_empty() && response.authorities.is_empty());
        assert!(!response.authoritative);
        assert_eq!(response.queries.len(), 1, "the question is echoed");
    }
}

/// A bare name's last search step (`redis.`): the root zone says NXDOMAIN, so getaddrinfo
/// ends with EAI_NONAME ("Name or service not known") as in a real cluster.
#[test]
fn single_label_names_do_not_exist() {
    for (name, record_type) in [
        ("redis.", RecordType::A),
        ("redis.", RecordType::AAAA),
        ("local.", RecordType::A),
    ] {
        let response = ask(&cluster(), name, record_type);
        assert_eq!(response.response_code, ResponseCode::NXDomain, "{name}");
        assert!(response.answers.is_empty());
        assert!(!response.authoritative, "the answer is not ours: {name}");
    }
}

#[test]
fn before_the_first_sync_names_are_server_failures() {
    let response = ask(
        &Records::unsynced(),
        "web.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(response.response_code, ResponseCode::ServFail);
    let outside = ask(&Records::unsynced(), "example.com.", RecordType::A);
    assert_eq!(outside.response_code, ResponseCode::Refused);
}

#[test]
fn zone_apex_soa_and_ns_and_the_name_server_address() {
    let records = cluster();
    let soa = ask(&records, "cluster.local.", RecordType::SOA);
    assert_eq!(soa.answers.len(), 1);
    assert!(matches!(soa.answers[0].data, RData::SOA(_)));
    let ns = ask(&records, "cluster.local.", RecordType::NS);
    assert_eq!(names(&ns), ["ns.dns.cluster.local."]);
    assert_eq!(ns.additionals.len(), 1);
    let server = ask(&records, "ns.dns.cluster.local.", RecordType::A);
    assert_eq!(addresses(&server), ["10.96.0.10"]);
    let reverse_soa = ask(&records, "in-addr.arpa.", RecordType::SOA);
    assert_eq!(reverse_soa.answers[0].name.to_ascii(), "in-addr.arpa.");
}

#[test]
fn dns_version_txt() {
    let response = ask(&cluster(), "dns-version.cluster.local.", RecordType::TXT);
    let [record] = response.answers.as_slice() else {
        panic!("one TXT: {response}");
    };
    assert_eq!(record.ttl, 28800);
    assert!(
        matches!(&record.data, RData::TXT(t) if t.to_string() == "1.1.0"),
        "{record}"
    );
}

#[test]
fn external_name_services_are_cnames() {
    let records = cluster();
    let outside = ask(&records, "search.default.svc.cluster.local.", RecordType::A);
    assert_eq!(outside.response_code, ResponseCode::NoError);
    assert_eq!(names(&outside), ["www.example.org."]);
    let inside = ask(&records, "alias.default.svc.cluster.local.", RecordType::A);
    assert_eq!(names(&inside), ["web.default.svc.cluster.local."]);
    assert_eq!(
        addresses(&inside),
        ["10.96.0.20"],
        "in-zone targets are followed"
    );
    let cname = ask(
        &records,
        "search.default.svc.cluster.local.",
        RecordType::CNAME,
    );
    assert_eq!(names(&cname), ["www.example.org."]);
}

#[test]
fn malformed_and_unsupported_requests() {
    let records = cluster();
    let mut two = query("web.default.svc.cluster.local.", RecordType::A);
    two.add_query(Query::query(
        Name::from_ascii("db.default.svc.cluster.local.").expect("name"),
        RecordType::A,
    ));
    assert_eq!(lookup(&records, &two).response_code, ResponseCode::FormErr);

    let mut status = query("web.default.svc.cluster.local.", RecordType::A);
    status.metadata.op_code = OpCode::Status;
    assert_eq!(
        lookup(&records, &status).response_code,
        ResponseCode::NotImp
    );

    let axfr = ask(&records, "cluster.local.", RecordType::AXFR);
    assert_eq!(axfr.response_code, ResponseCode::Refused);

    // Garbage after a header: FORMERR with the same id; no answer to answers or to noise.
    let mut garbage = vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    garbage.extend_from_slice(&[0xff; 5]);
    let reply = answer_packet(&records, &garbage, Transport::Udp).expect("FORMERR");
    let reply = Message::from_vec(&reply).expect("decodes");
    assert_eq!(
        (reply.id, reply.response_code),
        (0x1234, ResponseCode::FormErr)
    );
    assert_eq!(answer_packet(&records, &[1, 2, 3], Transport::Udp), None);
    let mut response = query("web.default.svc.cluster.local.", RecordType::A);
    response.metadata.message_type = MessageType::Response;
    let bytes = response.to_vec().expect("encode");
    assert_eq!(answer_packet(&records, &bytes, Transport::Udp), None);
}

/// A headless Service with 60 ready endpoints: 60 A records do not fit in 512 bytes.
fn big_cluster() -> Records {
    let services = vec![service(
        "default",
        "big",
        "None",
        json!([{"name": "http", "port": 80}]),
    )];
    let ips: Vec<String> = (1..=60).map(|i| format!("10.244.7.{i}")).collect();
    let endpoints: Vec<(&str, Option<&str>, bool)> =
        ips.iter().map(|ip| (ip.as_str(), None, true)).collect();
    let slices = vec![slice(
        "default",
        "big-1",
        "big",
        json!([{"name": "http", "port": 80, "protocol": "TCP"}]),
        &endpoints,
    )];
    Records::build(&services, &slices, &[namespace("default")], 1)
}

#[test]
fn large_udp_answers_are_truncated_with_tc() {
    let records = big_cluster();
    let request = query("big.default.svc.cluster.local.", RecordType::A);
    let bytes = request.to_vec().expect("encode");

    let udp = answer_packet(&records, &bytes, Transport::Udp).expect("answer");
    assert!(udp.len() <= 512, "{} bytes", udp.len());
    let udp = Message::from_vec(&udp).expect("decodes");
    assert!(udp.truncation, "TC set");
    assert!(!udp.answers.is_empty() && udp.answers.len() < 60);

    let tcp = answer_packet(&records, &bytes, Transport::Tcp).expect("answer");
    let tcp = Message::from_vec(&tcp).expect("decodes");
    assert!(!tcp.truncation);
    assert_eq!(tcp.answers.len(), 60);

    // EDNS with a 4096-byte buffer: everything fits over UDP, and the OPT comes back.
    let mut with_edns = request.clone();
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    with_edns.set_edns(edns);
    let bytes = with_edns.to_vec().expect("encode");
    let big = answer_packet(&records, &bytes, Transport::Udp).expect("answer");
    assert!(big.len() > 512);
    let big = Message::from_vec(&big).expect("decodes");
    assert!(!big.truncation);
    assert_eq!(big.answers.len(), 60);
    assert_eq!(big.edns.as_ref().map(|e| e.max_payload()), Some(4096));

    // Small answers are not truncated.
    let small = query("10-244-7-1.big.default.svc.cluster.local.", RecordType::A);
    let reply =
        answer_packet(&records, &small.to_vec().expect("encode"), Transport::Udp).expect("answer");
    assert!(!Message::from_vec(&reply).expect("decodes").truncation);
}

#[test]
fn records_follow_their_objects() {
    let records = cluster();
    assert!(records.is_synced());
    assert_eq!(records.service_count(), 5);
    // An EndpointSlice whose Service does not exist adds nothing.
    let orphan = slice(
        "default",
        "ghost-1",
        "ghost",
        json!([]),
        &[("10.244.9.9", None, true)],
    );
    let with_orphan = Records::build(
        &[service(
            "default",
            "web",
            "10.96.0.20",
            json!([{"port": 80}]),
        )],
        &[orphan],
        &[namespace("default")],
        1,
    );
    let response = ask(&with_orphan, "9.9.244.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(response.response_code, ResponseCode::NXDomain);
    // An unnamed port still gives the Service an address (and an SRV for the empty query).
    let a = ask(
        &with_orphan,
        "web.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(addresses(&a), ["10.96.0.20"]);
}
