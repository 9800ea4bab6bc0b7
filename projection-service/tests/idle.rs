//! The live reader of a quiet log fetches less often, and projects the next records all the
//! same. A binary of its own: the pace is a process-wide gauge, and no other projector may run
//! beside this one.

mod support;

use std::time::{Duration, Instant};

use event_store::workload::Workload;
use projection_service::metrics::READER_PACE;
use support::{Env, assert_same, clean_rebuild};

/// Waits until the reader's pace gauge says `pace`.
async fn wait_for_pace(pace: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while READER_PACE.with_label_values(&[pace]).get() != 1 {
        assert!(
            Instant::now() < deadline,
            "the reader did not turn {pace} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_quiet_log_slows_the_reader_and_the_next_records_are_projected_all_the_same() {
    // Arrange: a projector that calls the log quiet after 300 ms, with a first workload projected.
    let env = Env::new(3).await;
    let mut settings = env.settings();
    settings.projection.idle_after_ms = 300;
    settings.projection.idle_fetch_wait_ms = 150;
    let mut workload = Workload::new(10, 3);
    env.append_workload(&mut workload, 200).await;
    let stop = env.start_projector_with(settings).await;
    let live = env.active().await;
    env.wait_caught_up(&live, Duration::from_secs(30)).await;

    // Act 1: nothing is appended for a while.
    wait_for_pace("idle", Duration::from_secs(10)).await;
    assert_eq!(READER_PACE.with_label_values(&["busy"]).get(), 0);

    // Act 2: records again, in several bursts, each after the reader turned idle again.
    for _ in 0..3 {
        env.append_workload(&mut workload, 100).await;
        env.wait_caught_up(&live, Duration::from_secs(10)).await;
        wait_for_pace("idle", Duration::from_secs(10)).await;
    }
    env.append_workload(&mut workload, 100).await;
    wait_for_pace("busy", Duration::from_secs(10)).await;
    env.wait_caught_up(&live, Duration::from_secs(10)).await;
    stop.cancel();

    // Assert: switching readers lost and repeated nothing.
    assert_same(&clean_rebuild(&env).await, &env.contents(&live).await);
}
