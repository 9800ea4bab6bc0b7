//! Replicas that split the log's partitions between them by ordinal, as a StatefulSet numbers its
//! pods: replica `i` of `n` takes the partitions `p` with `p % n == i`.

/// This replica's ordinal: `configured` when set, else the number after the last `-` of
/// `hostname` (a StatefulSet's pod is `<name>-<ordinal>`). The error names `variable`, the setting
/// that gives it explicitly.
pub fn ordinal(
    configured: Option<usize>,
    hostname: Option<&str>,
    variable: &str,
) -> anyhow::Result<usize> {
    if let Some(ordinal) = configured {
        return Ok(ordinal);
    }
    hostname
        .and_then(|h| h.rsplit_once('-'))
        .and_then(|(_, n)| n.parse().ok())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "this replica's ordinal is not configured: set {variable}, or run under a host \
                 name ending in -<ordinal> (host name: {hostname:?})"
            )
        })
}

/// The host name to take an ordinal from (`HOSTNAME`, which Kubernetes sets to the pod's name).
pub fn hostname() -> Option<String> {
    std::env::var("HOSTNAME").ok()
}

/// The replica (of `replicas`) that takes `partition`.
pub fn owner_of(partition: i32, replicas: usize) -> usize {
    usize::try_from(partition).unwrap_or(0) % replicas.max(1)
}

/// The partitions of a topic of `partitions` that replica `ordinal` of `replicas` takes, in
/// order; an error when the ordinal is out of range or some replica would take none.
pub fn share(partitions: i32, replicas: usize, ordinal: usize) -> anyhow::Result<Vec<i32>> {
    let replicas = replicas.max(1);
    anyhow::ensure!(
        ordinal < replicas,
        "ordinal {ordinal} is out of range: {replicas} replicas are configured"
    );
    anyhow::ensure!(
        replicas <= usize::try_from(partitions).unwrap_or(0),
        "{replicas} replicas but only {partitions} partitions: some replicas would take none"
    );
    Ok((0..partitions)
        .filter(|p| owner_of(*p, replicas) == ordinal)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ordinal_is_the_configured_one_or_the_host_names_last_number() {
        assert_eq!(ordinal(Some(4), Some("x-1"), "V").expect("set"), 4);
        assert_eq!(
            ordinal(None, Some("prod-projection-2"), "V").expect("pod"),
            2
        );
        let error = ordinal(None, Some("laptop"), "TASKSTREAM_X__ORDINAL").expect_err("none");
        assert!(
            error.to_string().contains("TASKSTREAM_X__ORDINAL"),
            "{error}"
        );
        assert!(ordinal(None, None, "V").is_err());
        assert!(ordinal(None, Some("pod-"), "V").is_err());
    }

    #[test]
    fn shares_cover_every_partition_once() {
        let shares: Vec<Vec<i32>> = (0..3).map(|i| share(12, 3, i).expect("valid")).collect();
        assert_eq!(shares[0], vec![0, 3, 6, 9]);
        assert_eq!(shares[1], vec![1, 4, 7, 10]);
        assert_eq!(shares[2], vec![2, 5, 8, 11]);
        assert_eq!(share(12, 1, 0).expect("one"), (0..12).collect::<Vec<_>>());
        assert!(share(12, 3, 3).is_err());
        assert!(share(2, 3, 0).is_err());
    }
}
