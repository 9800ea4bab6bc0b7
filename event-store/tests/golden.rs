//! Every golden sample of every schema version decodes to the current event types, and the
//! current version's samples are exactly what today's encoder writes.

use std::collections::BTreeSet;

use event_store::events::{Due, EventPayload, Priority};
use event_store::registry::{self, SCHEMAS};
use event_store::testing::golden_samples;

#[test]
fn every_registered_schema_version_has_a_golden_sample_and_no_sample_is_orphaned() {
    let registered: BTreeSet<(String, u32)> = SCHEMAS
        .iter()
        .flat_map(|s| (1..=s.current_version()).map(move |v| (s.event_type.to_owned(), v)))
        .collect();
    let on_disk: BTreeSet<(String, u32)> = golden_samples()
        .into_iter()
        .map(|s| (s.event_type, s.schema_version))
        .collect();
    assert_eq!(registered, on_disk);
}

#[test]
fn every_golden_sample_decodes_to_the_current_event_type() {
    let samples = golden_samples();
    assert!(samples.len() >= SCHEMAS.len());
    for sample in samples {
        assert_eq!(
            sample.raw.event_type,
            sample.event_type,
            "{}",
            sample.path.display()
        );
        assert_eq!(
            sample.raw.schema_version,
            sample.schema_version,
            "{}",
            sample.path.display()
        );
        let event = registry::decode(sample.raw.clone())
            .unwrap_or_else(|e| panic!("{}: {e}", sample.path.display()));
        assert_eq!(event.event_type(), sample.event_type);
        assert_eq!(event.event_id, sample.raw.event_id);
        assert_eq!(event.aggregate_version, sample.raw.aggregate_version);
    }
}

#[test]
fn current_version_samples_reencode_byte_for_byte_as_json() {
    for sample in golden_samples() {
        if sample.schema_version != registry::current_version(&sample.event_type) {
            continue;
        }
        let event = registry::decode(sample.raw.clone()).expect("decodes");
        let reencoded = serde_json::to_value(registry::encode(&event)).expect("serializes");
        assert_eq!(
            reencoded,
            sample.json,
            "{}: the current schema changed without a version bump",
            sample.path.display()
        );
    }
}

#[test]
fn task_created_v1_is_upcast_with_its_priority_and_due() {
    let sample = golden_samples()
        .into_iter()
        .find(|s| s.event_type == "task.created" && s.schema_version == 1)
        .expect("v1 sample");
    let event = registry::decode(sample.raw).expect("decodes");
    let EventPayload::TaskCreated(created) = event.payload else {
        panic!("not a task.created: {:?}", event.payload);
    };
    assert_eq!(created.title, "Buy milk");
    assert_eq!(created.priority, Priority::High);
    assert!(matches!(created.due, Some(Due::At { tz: None, .. })));
    assert!(created.tags.is_empty());
}

#[test]
fn unknown_types_and_future_versions_are_errors() {
    let mut raw = golden_samples()[0].raw.clone();
    raw.event_type = "task.teleported".into();
    assert!(registry::decode(raw.clone()).is_err());
    let mut raw = golden_samples()[0].raw.clone();
    raw.schema_version = 99;
    assert!(registry::decode(raw.clone()).is_err());
    raw.schema_version = 0;
    assert!(registry::decode(raw).is_err());
}
