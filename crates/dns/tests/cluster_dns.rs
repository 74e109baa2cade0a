//! The DNS server against an in-process API server: Services and EndpointSlices created
//! through kube-rs show up in answers over UDP and TCP within two seconds, and go away when
//! deleted; the `ready` endpoint turns OK once synced.

use dns::{DnsListen, DnsServer};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long a change may take to reach the answers.
const PROPAGATION: Duration = Duration::from_secs(2);

struct Lab {
    _dir: tempfile::TempDir,
    client: kube::Client,
    dns: SocketAddr,
    health: SocketAddr,
    ready: SocketAddr,
    _stop_api: tokio::sync::oneshot::Sender<()>,
    _stop_dns: tokio::sync::oneshot::Sender<()>,
}

impl Lab {
    async fn start() -> Lab {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = apiserver::server::Config::new(dir.path().join("data"));
        config.in_memory = true;
        config.listen = "127.0.0.1:0".parse().expect("address");
        let api = apiserver::ApiServer::new(config).await.expect("API server");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, api.kubeconfig("dns-test")).expect("kubeconfig");
        let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(api.run(async {
            let _ = api_stopped.await;
        }));

        let client = dns::client(Some(&kubeconfig)).await.expect("client");
        let loopback = |port| Some(SocketAddr::from(([127, 0, 0, 1], port)));
        let server = DnsServer::bind(&DnsListen {
            dns: SocketAddr::from(([127, 0, 0, 1], 0)),
            health: loopback(0),
            ready: loopback(0),
        })
        .await
        .expect("bind");
        let dns = server.dns_addr();
        let health = server.health_addr().expect("health");
        let ready = server.ready_addr().expect("ready");
        let (stop_dns, dns_stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(dns::serve_cluster(server, client.clone(), async {
            let _ = dns_stopped.await;
        }));
        Lab {
            _dir: dir,
            client,
            dns,
            health,
            ready,
            _stop_api: stop_api,
            _stop_dns: stop_dns,
        }
    }
}

fn query(name: &str, record_type: RecordType) -> Message {
    let mut message = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(
        Name::from_ascii(name).expect("name"),
        record_type,
    ));
    message
}

fn rand_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(7);
    (nanos & 0xffff) as u16
}

async fn ask_udp(server: SocketAddr, name: &str, record_type: RecordType) -> Message {
    let request = query(name, record_type);
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    socket
        .send_to(&request.to_vec().expect("encode"), server)
        .await
        .expect("send");
    let mut buffer = vec![0u8; 4096];
    let (len, _) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buffer))
        .await
        .expect("an answer within 2 s")
        .expect("recv");
    let response = Message::from_vec(&buffer[..len]).expect("decodes");
    assert_eq!(response.id, request.id);
    response
}

async fn ask_tcp(server: SocketAddr, name: &str, record_type: RecordType) -> Message {
    let request = query(name, record_type).to_vec().expect("encode");
    let mut stream = TcpStream::connect(server).await.expect("connect");
    let mut framed = (request.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&request);
    stream.write_all(&framed).await.expect("write");
    let mut length = [0u8; 2];
    stream.read_exact(&mut length).await.expect("length");
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length))];
    stream.read_exact(&mut answer).await.expect("answer");
    Message::from_vec(&answer).expect("decodes")
}

/// Asks until `done` holds for the answer, for at most [`PROPAGATION`].
async fn until(
    server: SocketAddr,
    name: &str,
    record_type: RecordType,
    done: impl Fn(&Message) -> bool,
) -> Message {
    let start = Instant::now();
    loop {
        let response = ask_udp(server, name, record_type).await;
        if done(&response) {
            return response;
        }
        assert!(
            start.elapsed() < PROPAGATION,
            "{name} {record_type}: still {response}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn addresses(response: &Message) -> Vec<String> {
    response
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut text = String::new();
    stream.read_to_string(&mut text).await.expect("read");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_and_endpoint_slices_become_names() {
    let lab = Lab::start().await;

    let start = Instant::now();
    loop {
        let ready = http_get(lab.ready, "/ready").await;
        if ready.starts_with("HTTP/1.1 200") {
            assert!(ready.ends_with("\r\n\r\nOK"), "{ready}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never ready: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let health = http_get(lab.health, "/health").await;
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("OK"),
        "{health}"
    );
    assert!(
        http_get(lab.health, "/nope")
            .await
            .starts_with("HTTP/1.1 404")
    );

    // The bootstrap `kubernetes` Service is there from the start.
    let kubernetes = ask_udp(
        lab.dns,
        "kubernetes.default.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    assert_eq!(kubernetes.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&kubernetes).len(), 1, "{kubernetes}");

    let services: Api<Service> = Api::namespaced(lab.client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(lab.client.clone(), "default");
    let web: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }))
    .expect("service");
    let web = services
        .create(&PostParams::default(), &web)
        .await
        .expect("create service");
    let cluster_ip = web
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("a ClusterIP allocated");
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "web-abc12", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": true}}],
    }))
    .expect("slice");
    slices
        .create(&PostParams::default(), &slice)
        .await
        .expect("create slice");

    let name = "web.default.svc.cluster.local.";
    let a = until(lab.dns, name, RecordType::A, |r| !r.answers.is_empty()).await;
    assert_eq!(addresses(&a), std::slice::from_ref(&cluster_ip));
    assert_eq!(a.answers[0].ttl, 30);
    assert!(a.authoritative);

    let endpoint = until(
        lab.dns,
        "10-244-1-5.web.default.svc.cluster.local.",
        RecordType::A,
        |r| !r.answers.is_empty(),
    )
    .await;
    assert_eq!(addresses(&endpoint), ["10.244.1.5"]);

    let srv = ask_tcp(
        lab.dns,
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    let [record] = srv.answers.as_slice() else {
        panic!("one SRV: {srv}");
    };
    let RData::SRV(data) = &record.data else {
        panic!("SRV: {record}");
    };
    assert_eq!(
        (
            data.priority,
            data.weight,
            data.port,
            data.target.to_ascii()
        ),
        (0, 100, 80, name.to_string())
    );

    let octets: Vec<&str> = cluster_ip.split('.').rev().collect();
    let reverse = format!("{}.in-addr.arpa.", octets.join("."));
    let ptr = ask_udp(lab.dns, &reverse, RecordType::PTR).await;
    assert!(
        matches!(&ptr.answers.first().map(|r| &r.data), Some(RData::PTR(p)) if p.0.to_ascii() == name),
        "{ptr}"
    );

    let outside = ask_udp(lab.dns, "example.com.", RecordType::A).await;
    assert_eq!(outside.response_code, ResponseCode::Refused);

    services
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete service");
    let gone = until(lab.dns, name, RecordType::A, |r| {
        r.response_code == ResponseCode::NXDomain
    })
    .await;
    assert!(
        matches!(
            gone.authorities.first().map(|r| &r.data),
            Some(RData::SOA(_))
        ),
        "{gone}"
    );
}

/// Before the first sync: `ready` says 503 and names in the zone are SERVFAIL, as CoreDNS
/// answers while its caches are empty; `health` is OK regardless.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsynced_server_is_not_ready() {
    let loopback = |port| Some(SocketAddr::from(([127, 0, 0, 1], port)));
    let server = DnsServer::bind(&DnsListen {
        dns: SocketAddr::from(([127, 0, 0, 1], 0)),
        health: loopback(0),
        ready: loopback(0),
    })
    .await
    .expect("bind");
    let (dns, health, ready) = (
        server.dns_addr(),
        server.health_addr().expect("health"),
        server.ready_addr().expect("ready"),
    );
    let (_records, receiver) =
        tokio::sync::watch::channel(std::sync::Arc::new(dns::Records::unsynced()));
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(receiver, async {
        let _ = stopped.await;
    }));

    let not_ready = http_get(ready, "/ready").await;
    assert!(not_ready.starts_with("HTTP/1.1 503"), "{not_ready}");
    assert!(
        http_get(health, "/health")
            .await
            .starts_with("HTTP/1.1 200")
    );
    let udp = ask_udp(dns, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(udp.response_code, ResponseCode::ServFail);
    let tcp = ask_tcp(dns, "kubernetes.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(tcp.response_code, ResponseCode::ServFail);
}
