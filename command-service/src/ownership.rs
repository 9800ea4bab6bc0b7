//! Partition ownership across replicas, and forwarding a command to its partition's owner.
//!
//! Replica `i` of `n` owns the partitions `p` with `p % n == i`: it keeps their aggregates in
//! memory, tails them and appends their commands; it holds nothing of the others. A command for a
//! user of another replica's partition is forwarded, as received, to that replica (one hop; a
//! forwarded request is never forwarded again), and its answer is returned unchanged. With no
//! peers configured (`n = 1`) the process owns every partition and forwards nothing.
//!
//! Ownership is a matter of speed and memory, not of correctness: two processes appending to one
//! partition (a replica count changing during a rollout) are settled by the log-order rule.

use std::sync::LazyLock;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{RawPathParams, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use event_store::UserId;
use event_store::partition::partition_for;
use prometheus::IntCounterVec;
use serde::{Deserialize, Deserializer, Serialize};
use service_kit::problem::Problem;
use service_kit::replica;

/// Set on a request one replica forwards to another, with the forwarding replica's ordinal.
pub const FORWARDED_BY: &str = "taskstream-forwarded-by";

/// The largest request body forwarded (axum's default limit for the handlers' bodies).
const BODY_LIMIT: usize = 2 * 1024 * 1024;

static FORWARDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    prometheus::register_int_counter_vec!(
        "taskstream_command_forwards_total",
        "Commands sent on to the replica owning their partition, by outcome: forwarded (the \
         owner answered), owner_unavailable (it did not), misrouted (a forwarded command reached \
         a replica that does not own its partition either)",
        &["outcome"]
    )
    .expect("metric registers once")
});

/// Which replica this is, and where the others are.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OwnershipSettings {
    /// Base URLs of every replica, in ordinal order (this one's included), as a list or one
    /// comma-separated string. Empty: this process owns every partition.
    #[serde(deserialize_with = "comma_list")]
    pub peers: Vec<String>,
    /// This replica's ordinal (0-based). Unset: the number after the last `-` of the host name,
    /// as a StatefulSet names its pods.
    pub ordinal: Option<usize>,
    /// How long a forwarded command may take, answer included.
    pub forward_timeout_ms: u64,
}

impl OwnershipSettings {
    pub fn forward_timeout(&self) -> Duration {
        Duration::from_millis(if self.forward_timeout_ms == 0 {
            30_000
        } else {
            self.forward_timeout_ms
        })
    }
}

fn comma_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let items = match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(s) => s.split(',').map(str::to_owned).collect(),
        OneOrMany::Many(items) => items,
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().trim_end_matches('/').to_owned())
        .filter(|s| !s.is_empty())
        .collect())
}

/// This replica's share of the partitions, and the way to the others.
#[derive(Clone, Debug)]
pub struct Ownership {
    ordinal: usize,
    peers: Vec<String>,
    partitions: i32,
    /// The partitions this replica owns, in order.
    owned: Vec<i32>,
    client: reqwest::Client,
}

impl Ownership {
    /// The ownership `settings` describe over a topic of `partitions` partitions; `hostname` is
    /// where the ordinal comes from when the settings do not give it.
    pub fn new(
        settings: &OwnershipSettings,
        partitions: i32,
        hostname: Option<&str>,
    ) -> anyhow::Result<Self> {
        let replicas = settings.peers.len().max(1);
        let ordinal = if replicas == 1 {
            settings.ordinal.unwrap_or(0)
        } else {
            replica::ordinal(settings.ordinal, hostname, "TASKSTREAM_OWNERSHIP__ORDINAL")
                .map_err(|e| anyhow::anyhow!("{} peers are configured, but {e}", replicas))?
        };
        // Also checks the ordinal against the replicas and the replicas against the partitions.
        let owned = replica::share(partitions, replicas, ordinal)?;
        for peer in &settings.peers {
            reqwest::Url::parse(peer)
                .map_err(|e| anyhow::anyhow!("peer URL {peer:?} is not a URL: {e}"))?;
        }
        let client = reqwest::Client::builder()
            .timeout(settings.forward_timeout())
            .connect_timeout(Duration::from_secs(2))
            .build()?;
        Ok(Self {
            ordinal,
            peers: settings.peers.clone(),
            partitions,
            owned,
            client,
        })
    }

    /// One process owning every partition.
    pub fn single(partitions: i32) -> Self {
        Self::new(&OwnershipSettings::default(), partitions, None)
            .expect("a single replica owns every partition")
    }

    fn replicas(&self) -> usize {
        self.peers.len().max(1)
    }

    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// The replica that owns `partition`.
    pub fn owner_of(&self, partition: i32) -> usize {
        replica::owner_of(partition, self.replicas())
    }

    pub fn owns(&self, partition: i32) -> bool {
        self.owner_of(partition) == self.ordinal
    }

    /// The partitions this replica owns, in order.
    pub fn owned(&self) -> Vec<i32> {
        self.owned.clone()
    }

    /// Where a command of `user` goes: `None` when this replica owns the user's partition (or the
    /// user id is invalid, which the handler answers), else the owner's ordinal and partition.
    fn route(&self, user: &str) -> Option<(usize, i32)> {
        let user = UserId::parse(user).ok()?;
        let partition = partition_for(user.as_str(), self.partitions);
        let owner = self.owner_of(partition);
        (owner != self.ordinal).then_some((owner, partition))
    }
}

/// Route middleware of the command routes: runs a command here when this replica owns its user's
/// partition, else forwards it to the owner.
pub async fn forward_to_owner(
    State(ownership): State<Ownership>,
    params: RawPathParams,
    request: Request,
    next: Next,
) -> Response {
    let user = params
        .iter()
        .find(|(name, _)| *name == "user_id")
        .map(|(_, value)| value.to_owned());
    let Some((owner, partition)) = user.as_deref().and_then(|u| ownership.route(u)) else {
        return next.run(request).await;
    };
    if request.headers().contains_key(FORWARDED_BY) {
        FORWARDS.with_label_values(&["misrouted"]).inc();
        tracing::warn!(
            partition,
            owner,
            ordinal = ownership.ordinal,
            "a forwarded command reached a replica that does not own its partition"
        );
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "partition_moving",
            "The partition's owner is changing",
        )
        .detail(format!(
            "partition {partition} is not served here; the replicas disagree on who owns it \
             (a change of replica count in progress); nothing was changed"
        ))
        .retry_after(1)
        .into_response();
    }
    match forward(&ownership, owner, request).await {
        Ok(response) => {
            FORWARDS.with_label_values(&["forwarded"]).inc();
            response
        }
        Err(Unforwarded::TooLarge) => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "The request body is too large",
        )
        .detail(format!("at most {BODY_LIMIT} bytes"))
        .into_response(),
        Err(Unforwarded::Owner(error)) => {
            FORWARDS.with_label_values(&["owner_unavailable"]).inc();
            tracing::warn!(partition, owner, %error, "the partition's owner did not answer");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "owner_unavailable",
                "The replica serving this user is unavailable",
            )
            .detail(format!(
                "partition {partition} is served by replica {owner}, which did not answer; \
                 nothing was changed unless a retry with the same Idempotency-Key says so"
            ))
            .retry_after(1)
            .into_response()
        }
    }
}

enum Unforwarded {
    TooLarge,
    Owner(reqwest::Error),
}

/// Sends `request` to replica `owner` and turns its answer into this one's.
async fn forward(
    ownership: &Ownership,
    owner: usize,
    request: Request,
) -> Result<Response, Unforwarded> {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| Unforwarded::TooLarge)?;
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |pq| pq.as_str());
    let url = format!("{}{path}", ownership.peers[owner]);
    let mut headers = end_to_end(&parts.headers);
    headers.insert(FORWARDED_BY, HeaderValue::from(ownership.ordinal));
    let answer = ownership
        .client
        .request(parts.method, url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(Unforwarded::Owner)?;
    let status = answer.status();
    let headers = end_to_end(answer.headers());
    let body = answer.bytes().await.map_err(Unforwarded::Owner)?;
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

/// `headers` without the hop-by-hop ones (RFC 9110 §7.6.1), `Host` and `Content-Length`, which
/// the next hop sets itself.
fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    const HOP_BY_HOP: [HeaderName; 8] = [
        header::CONNECTION,
        header::HOST,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
    ];
    let mut out = headers.clone();
    for name in &HOP_BY_HOP {
        out.remove(name);
    }
    out.remove("keep-alive");
    out.remove("proxy-connection");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(peers: &[&str], ordinal: Option<usize>) -> OwnershipSettings {
        OwnershipSettings {
            peers: peers.iter().map(|s| (*s).to_owned()).collect(),
            ordinal,
            forward_timeout_ms: 0,
        }
    }

    const THREE: [&str; 3] = ["http://a:1", "http://b:1", "http://c:1"];

    #[test]
    fn a_single_process_owns_every_partition_and_forwards_nothing() {
        let one = Ownership::single(12);
        assert_eq!(one.owned(), (0..12).collect::<Vec<_>>());
        assert_eq!(one.route("alice"), None);
    }

    #[test]
    fn replicas_share_the_partitions_without_overlap() {
        let all: Vec<Vec<i32>> = (0..3)
            .map(|i| {
                Ownership::new(&settings(&THREE, Some(i)), 12, None)
                    .expect("valid")
                    .owned()
            })
            .collect();
        assert_eq!(all[0], vec![0, 3, 6, 9]);
        assert_eq!(all[1], vec![1, 4, 7, 10]);
        assert_eq!(all[2], vec![2, 5, 8, 11]);
    }

    #[test]
    fn a_user_is_routed_to_the_replica_owning_its_partition() {
        let replicas: Vec<Ownership> = (0..3)
            .map(|i| Ownership::new(&settings(&THREE, Some(i)), 12, None).expect("valid"))
            .collect();
        for user in ["alice", "bob", "carol", "dave", "erin"] {
            let partition = partition_for(user, 12);
            let owner = usize::try_from(partition).expect("non-negative") % 3;
            for (i, replica) in replicas.iter().enumerate() {
                let expected = (i != owner).then_some((owner, partition));
                assert_eq!(replica.route(user), expected, "{user} asked at replica {i}");
            }
        }
        // An invalid user id is the handler's to reject, wherever it arrives.
        assert_eq!(replicas[1].route(""), None);
    }

    #[test]
    fn the_ordinal_comes_from_the_host_name_when_not_set() {
        let from_host = Ownership::new(&settings(&THREE, None), 12, Some("taskstream-command-2"))
            .expect("valid");
        assert_eq!(from_host.ordinal(), 2);
        let error =
            Ownership::new(&settings(&THREE, None), 12, Some("laptop")).expect_err("no ordinal");
        assert!(error.to_string().contains("TASKSTREAM_OWNERSHIP__ORDINAL"));
    }

    #[test]
    fn the_helm_charts_peer_list_and_pod_names_are_understood() {
        // What helm/taskstream/templates/_helpers.tpl sets for three replicas of release "prod"
        // in namespace "tasks", and the host name of the StatefulSet's second pod.
        let peers = (0..3)
            .map(|i| {
                format!(
                    "http://prod-taskstream-command-service-{i}.\
                     prod-taskstream-command-service-headless.tasks.svc:8081"
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        let settings: OwnershipSettings =
            serde_json::from_value(serde_json::json!({ "peers": peers })).expect("parses");
        let ownership = Ownership::new(&settings, 12, Some("prod-taskstream-command-service-1"))
            .expect("valid");
        assert_eq!(ownership.ordinal(), 1);
        assert_eq!(ownership.owned(), vec![1, 4, 7, 10]);
        assert_eq!(
            ownership.peers[2],
            "http://prod-taskstream-command-service-2.prod-taskstream-command-service-headless.tasks.svc:8081"
        );
    }

    #[test]
    fn impossible_settings_are_refused() {
        assert!(Ownership::new(&settings(&THREE, Some(3)), 12, None).is_err());
        assert!(Ownership::new(&settings(&THREE, Some(0)), 2, None).is_err());
        assert!(Ownership::new(&settings(&["not a url", "http://b"], Some(0)), 12, None).is_err());
    }

    #[test]
    fn peers_are_read_from_a_comma_separated_string_or_a_list() {
        let from_string: OwnershipSettings =
            serde_json::from_str(r#"{"peers": " http://a:1/, http://b:1 ,"}"#).expect("parses");
        let from_list: OwnershipSettings =
            serde_json::from_str(r#"{"peers": ["http://a:1", "http://b:1"]}"#).expect("parses");
        assert_eq!(from_string.peers, vec!["http://a:1", "http://b:1"]);
        assert_eq!(from_string, from_list);
        let none: OwnershipSettings = serde_json::from_str(r#"{"peers": ""}"#).expect("parses");
        assert!(none.peers.is_empty());
    }
}
