//! The migrations apply to a fresh database, twice without harm, and give the bookkeeping tables
//! their constraints.

use migrations::testing::fresh_database;

#[tokio::test]
async fn migrations_apply_and_reapply() {
    let (pool, _) = fresh_database().await;
    migrations::run(&pool).await.expect("second run is a no-op");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .expect("list tables");
    for expected in ["processed_events", "projection_offsets"] {
        assert!(
            tables.iter().any(|t| t == expected),
            "{expected} in {tables:?}"
        );
    }
}

#[tokio::test]
async fn processed_events_rejects_a_duplicate_event_and_offsets_reject_negatives() {
    let (pool, _) = fresh_database().await;
    let id = uuid::Uuid::new_v4();
    let insert =
        "INSERT INTO processed_events (event_id, \"partition\", \"offset\") VALUES ($1, 0, 1)";
    sqlx::query(insert)
        .bind(id)
        .execute(&pool)
        .await
        .expect("first insert");
    assert!(sqlx::query(insert).bind(id).execute(&pool).await.is_err());
    let negative = sqlx::query(
        "INSERT INTO projection_offsets (projection, topic, \"partition\", next_offset) VALUES ('p', 't', 0, -1)",
    )
    .execute(&pool)
    .await;
    assert!(negative.is_err());
}
