//! Answering one DNS message from [`Records`], as CoreDNS's kubernetes plugin does with
//! kubeadm's Corefile (`kubernetes cluster.local in-addr.arpa ip6.arpa { pods insecure }`,
//! `ttl 30`), but with nothing behind it: names outside those zones are REFUSED instead of
//! forwarded (a lab has no upstream resolver to forward to, and must send nothing off the
//! machine). Single-label names are the exception: they are NXDOMAIN, which is what the root
//! zone behind a real cluster's `forward . /etc/resolv.conf` says of `redis.`, so a pod's
//! resolver, having walked its search list, fails with "Name or service not known" as it does
//! in a real cluster, not with "Temporary failure in name resolution".
//!
//! [`lookup`] is the pure question-to-answer function; [`answer_packet`] adds the wire format
//! and UDP truncation.

use crate::records::{
    CLUSTER_DOMAIN, EndpointAddress, Records, ServiceEntry, ServiceKind, TTL, dashed,
    service_domain,
};
use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The Kubernetes DNS specification version served as `dns-version.cluster.local` TXT.
pub const DNS_SCHEMA_VERSION: &str = "1.1.0";

/// The TTL CoreDNS gives the `dns-version` TXT record.
const SCHEMA_TTL: u32 = 28800;

/// CNAME chains longer than this stop, as CoreDNS's `A` does.
const MAX_CNAME_DEPTH: usize = 8;

/// The zones served, as label lists: the cluster domain and both reverse trees.
const ZONES: [&[&str]; 3] = [
    &["cluster", "local"],
    &["in-addr", "arpa"],
    &["ip6", "arpa"],
];

/// How a response travels: UDP answers are cut to the client's buffer size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// A name with no records of any type: NXDOMAIN (CoreDNS's `errNoItems`).
#[derive(Debug)]
struct NameError;

/// What a name resolves to before it becomes records (CoreDNS's `msg.Service`).
#[derive(Clone, Debug)]
struct Item {
    host: Host,
    /// `None`: no SRV record (a pod name, or an endpoint slice without ports).
    port: Option<u16>,
    /// The name SRV records point at, without the trailing dot.
    target: String,
}

#[derive(Clone, Debug)]
enum Host {
    Ip(IpAddr),
    /// An ExternalName Service's CNAME target.
    Name(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn holds(self, ip: IpAddr) -> bool {
        matches!(
            (self, ip),
            (Family::V4, IpAddr::V4(_)) | (Family::V6, IpAddr::V6(_))
        )
    }
}

/// A question inside one of the zones.
struct Question<'a> {
    /// As asked: answers repeat the client's spelling.
    qname: &'a Name,
    /// The labels below the zone, lower-cased (`["web", "default", "svc"]`).
    relative: Vec<String>,
    /// The zone in the client's spelling, for the SOA owner.
    zone: Name,
    /// Whether this is the cluster domain rather than a reverse tree.
    forward: bool,
}

/// Records and additional records of a positive (or NODATA) answer.
type Answer = (Vec<Record>, Vec<Record>);

/// The response to `request`: an authoritative answer for names in the cluster zones,
/// NXDOMAIN for single-label names, REFUSED for everything else.
pub fn lookup(records: &Records, request: &Message) -> Message {
    let mut response = Message::new(request.id, MessageType::Response, request.op_code);
    response.metadata = Metadata::response_from_request(&request.metadata);
    if let Some(edns) = &request.edns {
        let mut reply = Edns::new();
        reply.set_max_payload(edns.max_payload());
        reply.set_dnssec_ok(edns.flags().dnssec_ok);
        response.set_edns(reply);
    }
    if request.op_code != OpCode::Query {
        response.metadata.response_code = ResponseCode::NotImp;
        return response;
    }
    let [query] = request.queries.as_slice() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response;
    };
    response.add_query(query.clone());
    if query.query_class() != DNSClass::IN {
        response.metadata.response_code = ResponseCode::Refused;
        return response;
    }
    let Some(question) = question(query.name()) else {
        response.metadata.response_code = if query.name().num_labels() == 1 {
            ResponseCode::NXDomain
        } else {
            ResponseCode::Refused
        };
        return response;
    };
    let outcome = match query.query_type() {
        RecordType::AXFR | RecordType::IXFR => {
            response.metadata.response_code = ResponseCode::Refused;
            return response;
        }
        RecordType::A => records
            .addresses(question.qname, &question, Family::V4, 0)
            .map(|a| (a, Vec::new())),
        RecordType::AAAA => records
            .addresses(question.qname, &question, Family::V6, 0)
            .map(|a| (a, Vec::new())),
        RecordType::SRV => records.srv(&question),
        RecordType::TXT => records.txt(&question),
        RecordType::CNAME => records.cname(&question),
        RecordType::PTR if !question.forward => records.ptr(&question),
        RecordType::SOA if question.relative.is_empty() => {
            Ok((vec![records.soa(&question.zone)], Vec::new()))
        }
        RecordType::SOA => Ok((Vec::new(), Vec::new())),
        RecordType::NS if question.relative.is_empty() => Ok(records.ns(&question)),
        // Any other type: the name exists or not, as an A lookup says (NODATA or NXDOMAIN).
        _ => records
            .addresses(question.qname, &question, Family::V4, 0)
            .map(|_| (Vec::new(), Vec::new())),
    };
    response.metadata.authoritative = true;
    match outcome {
        Ok((answers, additionals)) => {
            if answers.is_empty() {
                response.add_authority(records.soa(&question.zone));
            }
            response.add_answers(answers);
            response.add_additionals(additionals);
        }
        Err(NameError) => {
            response.metadata.response_code = if records.synced {
                ResponseCode::NXDomain
            } else {
                ResponseCode::ServFail
            };
            response.add_authority(records.soa(&question.zone));
        }
    }
    response
}

/// Decodes `packet`, answers it and encodes the answer, cut to fit a UDP client's buffer
/// (512 bytes without EDNS) with the TC bit set when anything was left out. `None` for
/// packets that get no answer: responses, and fragments too short to carry a header.
pub fn answer_packet(records: &Records, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
    let request = match Message::from_vec(packet) {
        Ok(request) => request,
        Err(_) => return format_error(packet),
    };
    if request.message_type == MessageType::Response {
        return None;
    }
    let limit = match transport {
        Transport::Udp => usize::from(request.max_payload()),
        Transport::Tcp => usize::from(u16::MAX),
    };
    let response = lookup(records, &request);
    match encode(response, limit) {
        Some(bytes) => Some(bytes),
        None => {
            let mut failure =
                Message::error_msg(request.id, request.op_code, ResponseCode::ServFail);
            failure.add_queries(request.queries.iter().cloned());
            failure.to_vec().ok()
        }
    }
}

/// FORMERR for a query whose header could be read but whose body could not.
fn format_error(packet: &[u8]) -> Option<Vec<u8>> {
    let header: &[u8; 12] = packet.get(..12)?.try_into().ok()?;
    let is_response = header[2] & 0x80 != 0;
    if is_response {
        return None;
    }
    let id = u16::from_be_bytes([header[0], header[1]]);
    let op_code = OpCode::from_u8((header[2] >> 3) & 0x0f);
    Message::error_msg(id, op_code, ResponseCode::FormErr)
        .to_vec()
        .ok()
}

/// Encodes `response`, dropping records from the end (additional, then authority, then
/// answer, as miekg/dns's `Truncate` keeps the front of each section) until it fits.
fn encode(mut response: Message, limit: usize) -> Option<Vec<u8>> {
    loop {
        let bytes = response.to_vec().ok()?;
        if bytes.len() <= limit {
            return Some(bytes);
        }
        response.metadata.truncation = true;
        let dropped = response.additionals.pop().is_some()
            || response.authorities.pop().is_some()
            || response.answers.pop().is_some();
        if !dropped {
            return Some(bytes);
        }
    }
}

/// Splits `qname` into its zone and the labels below it; `None` outside the zones served.
fn question(qname: &Name) -> Option<Question<'_>> {
    let labels: Vec<String> = qname
        .iter()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect();
    let zone_labels = ZONES.iter().find(|zone| {
        labels.len() >= zone.len() && labels[labels.len() - zone.len()..].iter().eq(zone.iter())
    })?;
    let relative = labels[..labels.len() - zone_labels.len()].to_vec();
    let mut zone = qname.trim_to(zone_labels.len());
    zone.set_fqdn(true);
    Some(Question {
        qname,
        relative,
        zone,
        forward: zone_labels[0] == "cluster",
    })
}

/// What a name under the cluster zone asks for, as CoreDNS's `parseRequest` reads it.
#[derive(Default, Debug)]
struct Parsed<'a> {
    kind: &'a str,
    namespace: &'a str,
    service: &'a str,
    endpoint: &'a str,
    port: &'a str,
    protocol: &'a str,
}

fn parse(relative: &[String]) -> Result<Parsed<'_>, NameError> {
    let mut parsed = Parsed::default();
    let mut labels = relative.iter().rev().map(String::as_str);
    match labels.next() {
        None => return Ok(parsed),
        Some(kind @ ("svc" | "pod")) => parsed.kind = kind,
        Some(_) => return Err(NameError),
    }
    let Some(namespace) = labels.next() else {
        return Ok(parsed);
    };
    parsed.namespace = namespace;
    let Some(service) = labels.next() else {
        return Ok(parsed);
    };
    parsed.service = service;
    let rest: Vec<&str> = labels.collect();
    match rest.as_slice() {
        [] => {}
        [endpoint] => parsed.endpoint = endpoint,
        [protocol, port] => {
            parsed.protocol = protocol.strip_prefix('_').unwrap_or(protocol);
            parsed.port = port.strip_prefix('_').unwrap_or(port);
        }
        _ => return Err(NameError),
    }
    Ok(parsed)
}

/// An empty request part matches anything; otherwise names compare without case.
fn matches(asked: &str, actual: &str) -> bool {
    asked.is_empty() || asked.eq_ignore_ascii_case(actual)
}

fn fqdn(domain: &str) -> Option<Name> {
    let text = if domain.ends_with('.') {
        domain.to_string()
    } else {
        format!("{domain}.")
    };
    Name::from_ascii(text).ok()
}

fn address_record(owner: &Name, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(owner.clone(), TTL, data)
}

/// The IP a reverse name spells: four decimal labels under in-addr.arpa or 32 nibbles under
/// ip6.arpa, least significant first.
fn reverse_address(question: &Question<'_>) -> Option<IpAddr> {
    let labels = &question.relative;
    if question
        .zone
        .iter()
        .next()
        .is_some_and(|l| l.eq_ignore_ascii_case(b"in-addr"))
    {
        if labels.len() != 4 {
            return None;
        }
        let mut octets = [0u8; 4];
        for (octet, label) in octets.iter_mut().zip(labels.iter().rev()) {
            if label.is_empty() || label.len() > 3 || !label.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *octet = label.parse().ok()?;
        }
        Some(IpAddr::V4(Ipv4Addr::from(octets)))
    } else {
        if labels.len() != 32 {
            return None;
        }
        let mut value: u128 = 0;
        for label in labels.iter().rev() {
            let [nibble] = label.as_bytes() else {
                return None;
            };
            let digit = char::from(*nibble).to_digit(16)?;
            value = (value << 4) | u128::from(digit);
        }
        Some(IpAddr::V6(Ipv6Addr::from(value)))
    }
}

impl Records {
    /// The zone's SOA, as CoreDNS builds it: `ns.dns.<zone>`, `hostmaster.<zone>`.
    fn soa(&self, zone: &Name) -> Record {
        let at = |prefix: &str| {
            Name::from_ascii(prefix)
                .and_then(|p| p.append_domain(zone))
                .unwrap_or_else(|_| zone.clone())
        };
        let soa = SOA::new(
            at("ns.dns"),
            at("hostmaster"),
            self.serial,
            7200,
            1800,
            86400,
            TTL,
        );
        Record::from_rdata(zone.clone(), TTL.min(300), RData::SOA(soa))
    }

    fn name_server_name(zone: &Name) -> Option<Name> {
        Name::from_ascii("ns.dns").ok()?.append_domain(zone).ok()
    }

    fn ns(&self, question: &Question<'_>) -> Answer {
        let Some(server) = Self::name_server_name(&question.zone) else {
            return (Vec::new(), Vec::new());
        };
        let answer = Record::from_rdata(question.qname.clone(), TTL, RData::NS(NS(server.clone())));
        let glue = self
            .name_servers
            .iter()
            .map(|ip| address_record(&server, *ip))
            .collect();
        (vec![answer], glue)
    }

    /// A or AAAA records for the question's name, following ExternalName CNAMEs that stay
    /// inside the cluster zone.
    fn addresses(
        &self,
        owner: &Name,
        question: &Question<'_>,
        family: Family,
        depth: usize,
    ) -> Result<Vec<Record>, NameError> {
        if question.relative == ["ns", "dns"] {
            return Ok(self
                .name_servers
                .iter()
                .filter(|ip| family.holds(**ip))
                .map(|ip| address_record(owner, *ip))
                .collect());
        }
        let items = self.items(question)?;
        let mut records = Vec::new();
        let mut seen = HashSet::new();
        for item in items {
            match item.host {
                Host::Ip(ip) => {
                    if family.holds(ip) && seen.insert(ip) {
                        records.push(address_record(owner, ip));
                    }
                }
                Host::Name(target) => {
                    let Some(target_name) = fqdn(&target) else {
                        continue;
                    };
                    let cname = Record::from_rdata(
                        owner.clone(),
                        TTL,
                        RData::CNAME(CNAME(target_name.clone())),
                    );
                    match self::question(&target_name) {
                        Some(next) if next.forward => {
                            // Inside the zone: the CNAME only with what it leads to.
                            if depth + 1 >= MAX_CNAME_DEPTH {
                                continue;
                            }
                            if let Ok(more) = self.addresses(&target_name, &next, family, depth + 1)
                                && !more.is_empty()
                            {
                                records.push(cname);
                                records.extend(more);
                            }
                        }
                        // Outside: CoreDNS would resolve the target upstream; with no
                        // upstream the client gets the CNAME to chase itself.
                        _ => records.push(cname),
                    }
                }
            }
        }
        Ok(records)
    }

    fn txt(&self, question: &Question<'_>) -> Result<Answer, NameError> {
        if question.forward && question.relative == ["dns-version"] {
            let txt = TXT::new(vec![DNS_SCHEMA_VERSION.to_string()]);
            let record = Record::from_rdata(question.qname.clone(), SCHEMA_TTL, RData::TXT(txt));
            return Ok((vec![record], Vec::new()));
        }
        // CoreDNS's rule: a name with records of another type is NODATA, anything else
        // (even an existing namespace) NXDOMAIN.
        match self.items(question) {
            Ok(items) if !items.is_empty() => Ok((Vec::new(), Vec::new())),
            _ => Err(NameError),
        }
    }

    fn cname(&self, question: &Question<'_>) -> Result<Answer, NameError> {
        let items = self.items(question)?;
        let answers = match items.first().map(|i| &i.host) {
            Some(Host::Name(target)) => fqdn(target)
                .map(|t| Record::from_rdata(question.qname.clone(), TTL, RData::CNAME(CNAME(t))))
                .into_iter()
                .collect(),
            _ => Vec::new(),
        };
        Ok((answers, Vec::new()))
    }

    /// SRV records with the target addresses as additional records. Weights split 100
    /// between the records, as CoreDNS does.
    fn srv(&self, question: &Question<'_>) -> Result<Answer, NameError> {
        let items: Vec<Item> = self
            .items(question)?
            .into_iter()
            .filter(|i| matches!(i.host, Host::Ip(_)))
            .collect();
        let count = u16::try_from(items.len()).unwrap_or(u16::MAX).max(1);
        let weight = (100 / count).max(1);
        let mut answers = Vec::new();
        let mut additionals = Vec::new();
        let mut seen_srv = HashSet::new();
        let mut seen_address = HashSet::new();
        for item in items {
            let (Host::Ip(ip), Some(port)) = (&item.host, item.port) else {
                continue;
            };
            let Some(target) = fqdn(&item.target) else {
                continue;
            };
            if seen_srv.insert((item.target.clone(), port)) {
                let srv = SRV::new(0, weight, port, target.clone());
                answers.push(Record::from_rdata(
                    question.qname.clone(),
                    TTL,
                    RData::SRV(srv),
                ));
            }
            if seen_address.insert((item.target.clone(), *ip)) {
                additionals.push(address_record(&target, *ip));
            }
        }
        Ok((answers, additionals))
    }

    /// PTR for a Service's ClusterIP or an endpoint address; reverse names of other
    /// addresses are NXDOMAIN.
    fn ptr(&self, question: &Question<'_>) -> Result<Answer, NameError> {
        let Some(ip) = reverse_address(question) else {
            return self.items(question).map(|_| (Vec::new(), Vec::new()));
        };
        let targets = self.reverse.get(&ip).ok_or(NameError)?;
        let answers = targets
            .iter()
            .filter_map(|t| fqdn(t))
            .map(|t| Record::from_rdata(question.qname.clone(), TTL, RData::PTR(PTR(t))))
            .collect();
        Ok((answers, Vec::new()))
    }

    /// What a name stands for (CoreDNS's `Records`): `Ok(empty)` for names that exist
    /// without records of their own (the zone, `svc`, an existing namespace).
    fn items(&self, question: &Question<'_>) -> Result<Vec<Item>, NameError> {
        if !question.forward {
            // Reverse trees hold only PTR records of full addresses.
            return if question.relative.is_empty() {
                Ok(Vec::new())
            } else {
                Err(NameError)
            };
        }
        let parsed = parse(&question.relative)?;
        if parsed.namespace.is_empty() {
            return Ok(Vec::new());
        }
        if !self.namespaces.contains(parsed.namespace) {
            return Err(NameError);
        }
        if parsed.service.is_empty() {
            return Ok(Vec::new());
        }
        if parsed.kind == "pod" {
            return pod_items(&parsed);
        }
        self.service_items(&parsed)
    }

    /// CoreDNS's `findServices` for one namespace and service name.
    fn service_items(&self, parsed: &Parsed<'_>) -> Result<Vec<Item>, NameError> {
        let key = (parsed.namespace.to_string(), parsed.service.to_string());
        let entry = self.services.get(&key).ok_or(NameError)?;
        let domain = service_domain(parsed.service, parsed.namespace);
        match &entry.kind {
            ServiceKind::ExternalName(target) => {
                let names_a_host = target.parse::<IpAddr>().is_err() && !target.is_empty();
                if !parsed.endpoint.is_empty()
                    || !parsed.port.is_empty()
                    || !parsed.protocol.is_empty()
                    || !names_a_host
                {
                    return Err(NameError);
                }
                Ok(vec![Item {
                    host: Host::Name(target.clone()),
                    port: None,
                    target: domain,
                }])
            }
            _ if entry.is_headless() || !parsed.endpoint.is_empty() => {
                endpoint_items(entry, parsed, &domain)
            }
            ServiceKind::ClusterIp(ips) => {
                let mut items = Vec::new();
                let mut any_port = false;
                for port in &entry.ports {
                    if !(matches(parsed.port, &port.name)
                        && matches(parsed.protocol, &port.protocol))
                    {
                        continue;
                    }
                    any_port = true;
                    items.extend(ips.iter().map(|ip| Item {
                        host: Host::Ip(*ip),
                        port: port.port,
                        target: domain.clone(),
                    }));
                }
                if any_port { Ok(items) } else { Err(NameError) }
            }
            ServiceKind::Headless => Err(NameError),
        }
    }
}

/// Ready endpoint addresses of a headless Service (or of any Service, for
/// `<hostname>.<service>...`), one per matching port.
fn endpoint_items(
    entry: &ServiceEntry,
    parsed: &Parsed<'_>,
    domain: &str,
) -> Result<Vec<Item>, NameError> {
    let mut items = Vec::new();
    for subset in &entry.subsets {
        for EndpointAddress { ip, hostname } in &subset.addresses {
            if !parsed.endpoint.is_empty() && !parsed.endpoint.eq_ignore_ascii_case(hostname) {
                continue;
            }
            for port in &subset.ports {
                if !(matches(parsed.port, &port.name) && matches(parsed.protocol, &port.protocol)) {
                    continue;
                }
                items.push(Item {
                    host: Host::Ip(*ip),
                    port: port.port,
                    target: format!("{hostname}.{domain}"),
                });
            }
        }
    }
    if items.is_empty() {
        Err(NameError)
    } else {
        Ok(items)
    }
}

/// `pods insecure`: `a-b-c-d.<namespace>.pod` is a.b.c.d whether or not a pod has it.
fn pod_items(parsed: &Parsed<'_>) -> Result<Vec<Item>, NameError> {
    let name = parsed.service;
    let text = if name.matches('-').count() == 3 && !name.contains("--") {
        name.replace('-', ".")
    } else {
        name.replace('-', ":")
    };
    let ip: IpAddr = text.parse().map_err(|_| NameError)?;
    Ok(vec![Item {
        host: Host::Ip(ip),
        port: None,
        target: format!("{}.{}.pod.{CLUSTER_DOMAIN}", dashed(ip), parsed.namespace),
    }])
}

#[cfg(test)]
#[path = "lookup_tests.rs"]
mod tests;
