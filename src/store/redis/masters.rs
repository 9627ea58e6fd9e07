//! The masters of a Redis Cluster, and commands sent to one master by its address: what a
//! command without a key needs to cover the whole keyspace. The cluster connection sends such a
//! command (`SCAN`) to one node, and each node answers for its own keys only.
//!
//! The masters are read from `CLUSTER SLOTS`, the table the cluster connection itself routes
//! by, so an address found here is the one the connection knows its node by. The first node
//! listed for a range of slots is the range's master; the replicas listed after it are never
//! taken. A command is then routed `ByAddress`: the connection sends it to that node or fails.
//! It never falls back to another node of the shard (a replica) or to a random node, as it may
//! for a command routed by slot while the master is unreachable.

use std::fmt;

use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo, SingleNodeRoutingInfo,
};
use redis::{Cmd, ErrorKind, RedisError, RedisResult, Value};

use super::topology::Conn;

/// One master of a Cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Master {
    host: String,
    port: u16,
}

impl fmt::Display for Master {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

fn failure(what: &'static str, detail: String) -> RedisError {
    RedisError::from((ErrorKind::Client, what, detail))
}

/// The cluster connection of `conn`; only a Cluster store asks.
fn cluster(conn: Conn) -> RedisResult<ClusterConnection> {
    match conn {
        Conn::Cluster(c) => Ok(c),
        Conn::Server(_) => Err(failure(
            "not a Cluster",
            "a command by node address needs a Cluster".into(),
        )),
    }
}

/// A master named in the slot table: its address as written there (`None` when empty: the
/// node that answered), its port and its node id.
type Listed = (Option<String>, u16, String);

/// Every master that serves slots, each once, in slot order.
pub(super) async fn masters(conn: Conn) -> RedisResult<Vec<Master>> {
    let mut conn = cluster(conn)?;
    // Asked of every master the connection knows, the first answer taken: a master that is
    // down does not stop the lookup (the commands sent to it later fail, naming it).
    let table = conn
        .route_command(
            redis::cmd("CLUSTER").arg("SLOTS").clone(),
            RoutingInfo::MultiNode((
                MultipleNodeRoutingInfo::AllMasters,
                Some(ResponsePolicy::OneSucceeded),
            )),
        )
        .await?;
    let listed = parse_slots(table)?;
    let mut out = Vec::with_capacity(listed.len());
    for (host, port, id) in listed {
        let host = match host {
            Some(h) => h,
            None => answering_host(&mut conn, &id).await?,
        };
        out.push(Master { host, port });
    }
    Ok(out)
}

/// The masters of a `CLUSTER SLOTS` answer, each once (by node id), in slot order.
fn parse_slots(table: Value) -> RedisResult<Vec<Listed>> {
    let Value::Array(ranges) = table else {
        return Err(failure("CLUSTER SLOTS", "not an array".into()));
    };
    let mut out: Vec<Listed> = Vec::new();
    let mut ranges: Vec<(i64, Value)> = ranges
        .into_iter()
        .map(|r| match r {
            Value::Array(mut items) if items.len() >= 3 => match items[0] {
                Value::Int(start) => Ok((start, items.swap_remove(2))),
                _ => Err(failure(
                    "CLUSTER SLOTS",
                    "a range without its first slot".into(),
                )),
            },
            // A range skipped would leave its master unscanned while rekey reports success.
            _ => Err(failure(
                "CLUSTER SLOTS",
                "a range that is not [start, end, master]".into(),
            )),
        })
        .collect::<RedisResult<_>>()?;
    ranges.sort_by_key(|(start, _)| *start);
    for (start, master) in ranges {
        let Value::Array(node) = master else {
            return Err(failure("CLUSTER SLOTS", format!("slot {start}: no master")));
        };
        let text = |v: Option<&Value>| match v {
            Some(Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            Some(Value::SimpleString(s)) => Some(s.clone()),
            _ => None,
        };
        let endpoint = text(node.first());
        let port = match node.get(1) {
            Some(Value::Int(p)) => u16::try_from(*p).ok(),
            _ => None,
        };
        let id = text(node.get(2)).unwrap_or_default();
        let Some(port) = port else {
            return Err(failure(
                "CLUSTER SLOTS",
                format!("the master of slot {start} has no port"),
            ));
        };
        // Written as the connection reads it: empty, missing or a wildcard address is the
        // node that answered; `?` is a node whose address is unknown, which nobody can reach.
        let host = match endpoint.as_deref() {
            None | Some("") | Some("0.0.0.0") | Some("::") => None,
            Some("?") => {
                return Err(failure(
                    "CLUSTER SLOTS",
                    format!("the master of slot {start} (node {id}) has no known address"),
                ))
            }
            Some(h) => Some(h.to_string()),
        };
        if !out
            .iter()
            .any(|(_, _, known)| *known == id && !id.is_empty())
        {
            out.push((host, port, id));
        }
    }
    Ok(out)
}

/// The host of the master whose node id is `id`, as the connection knows it. A node writes
/// no address for itself before it has met another node: a Cluster of one node, so the slot
/// table came from it. The connection then calls it by the address it reached it at, which a
/// command sent to every master reports along with each answer.
async fn answering_host(conn: &mut ClusterConnection, id: &str) -> RedisResult<String> {
    let answers = conn
        .route_command(
            redis::cmd("CLUSTER").arg("MYID").clone(),
            RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None)),
        )
        .await?;
    if let Value::Map(pairs) = answers {
        for (addr, answer) in pairs {
            let (Ok(addr), Ok(answered)) = (
                redis::from_redis_value::<String>(addr),
                redis::from_redis_value::<String>(answer),
            ) else {
                continue;
            };
            if answered == id {
                if let Some((host, _)) = addr.rsplit_once(':') {
                    return Ok(host.to_string());
                }
            }
        }
    }
    Err(failure(
        "CLUSTER SLOTS",
        format!("no address for the master with node id {id}"),
    ))
}

/// `cmd` sent to `master` and to no other node.
pub(super) async fn on_master(conn: Conn, master: &Master, cmd: Cmd) -> RedisResult<Value> {
    let mut conn = cluster(conn)?;
    let route = SingleNodeRoutingInfo::ByAddress {
        host: master.host.clone(),
        port: master.port,
    };
    conn.route_command(cmd, RoutingInfo::SingleNode(route))
        .await?
        .extract_error()
}

/// Whether `master` still says it is a master (`ROLE`): a failover since the slot table was
/// read makes it a replica, whose keys lag its new master's.
pub(super) async fn still_master(conn: Conn, master: &Master) -> RedisResult<bool> {
    let role = on_master(conn, master, redis::cmd("ROLE")).await?;
    let Value::Array(items) = role else {
        return Ok(false);
    };
    Ok(match items.first() {
        Some(Value::BulkString(b)) => b == b"master",
        Some(Value::SimpleString(s)) => s == "master",
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, port: i64, id: &str) -> Value {
        Value::Array(vec![
            Value::BulkString(host.as_bytes().to_vec()),
            Value::Int(port),
            Value::BulkString(id.as_bytes().to_vec()),
        ])
    }

    fn range(start: i64, end: i64, nodes: Vec<Value>) -> Value {
        let mut items = vec![Value::Int(start), Value::Int(end)];
        items.extend(nodes);
        Value::Array(items)
    }

    #[test]
    fn the_first_node_of_each_range_is_its_master_each_taken_once_in_slot_order() {
        let table = Value::Array(vec![
            range(
                10923,
                16383,
                vec![node("10.0.0.3", 7002, "c"), node("10.0.0.6", 7005, "f")],
            ),
            range(
                0,
                5460,
                vec![node("10.0.0.1", 7000, "a"), node("10.0.0.4", 7003, "d")],
            ),
            range(5461, 10000, vec![node("10.0.0.2", 7001, "b")]),
            // A master serving two ranges is listed once.
            range(10001, 10922, vec![node("10.0.0.2", 7001, "b")]),
        ]);
        let listed = parse_slots(table).unwrap();
        let hosts: Vec<(Option<&str>, u16)> =
            listed.iter().map(|(h, p, _)| (h.as_deref(), *p)).collect();
        assert_eq!(
            hosts,
            vec![
                (Some("10.0.0.1"), 7000),
                (Some("10.0.0.2"), 7001),
                (Some("10.0.0.3"), 7002)
            ]
        );
    }

    #[test]
    fn an_empty_address_is_the_answering_node_and_an_unknown_one_an_error() {
        let single = Value::Array(vec![range(0, 16383, vec![node("", 7000, "a")])]);
        assert_eq!(
            parse_slots(single).unwrap(),
            vec![(None, 7000, "a".to_string())]
        );
        let unknown = Value::Array(vec![range(0, 16383, vec![node("?", 7000, "a")])]);
        let err = parse_slots(unknown).unwrap_err();
        assert!(err.to_string().contains("no known address"), "{err}");
        // A range that cannot be read fails the lookup rather than leaving its master out.
        let odd = Value::Array(vec![
            range(0, 8000, vec![node("10.0.0.1", 7000, "a")]),
            Value::Array(vec![Value::Int(8001)]),
        ]);
        assert!(parse_slots(odd).is_err());
    }

    #[test]
    fn an_ipv6_master_is_written_in_brackets() {
        let m = Master {
            host: "::1".into(),
            port: 7000,
        };
        assert_eq!(m.to_string(), "[::1]:7000");
    }
}
