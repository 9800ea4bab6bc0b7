//! The migrations apply to a fresh database, twice without harm; read-model generations are
//! created with their bookkeeping constraints, one is active, and switching retires the other.

use migrations::generations;
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
    for expected in [
        "read_model_generations",
        "read_model_active",
        "dead_letters",
    ] {
        assert!(
            tables.iter().any(|t| t == expected),
            "{expected} in {tables:?}"
        );
    }
}

#[tokio::test]
async fn a_generation_rejects_a_duplicate_event_and_negative_offsets() {
    let (pool, _) = fresh_database().await;
    let generation = generations::ensure_active(&pool)
        .await
        .expect("first generation");
    assert_eq!((generation.number, generation.schema.as_str()), (1, "rm_1"));
    assert_eq!(generations::ensure_active(&pool).await.unwrap(), generation);
    let id = uuid::Uuid::new_v4();
    let insert = format!(
        r#"INSERT INTO {} (event_id, "partition", "offset") VALUES ($1, 0, 1)"#,
        generation.table("processed_events")
    );
    sqlx::query(&insert)
        .bind(id)
        .execute(&pool)
        .await
        .expect("first insert");
    assert!(sqlx::query(&insert).bind(id).execute(&pool).await.is_err());
    let negative = sqlx::query(&format!(
        r#"INSERT INTO {} ("partition", next_offset) VALUES (0, -1)"#,
        generation.table("projection_offsets")
    ))
    .execute(&pool)
    .await;
    assert!(negative.is_err());
}

#[tokio::test]
async fn switching_generations_retires_the_old_one_and_drops_only_inactive_ones() {
    let (pool, _) = fresh_database().await;
    let first = generations::ensure_active(&pool).await.unwrap();
    let second = generations::create(&pool).await.unwrap();
    assert_eq!(second.state, "building");
    let mut tx = pool.begin().await.unwrap();
    assert_eq!(
        generations::lock_for_switch(&mut tx).await.unwrap(),
        Some(first.clone())
    );
    generations::activate(&mut tx, second.number).await.unwrap();
    tx.commit().await.unwrap();
    let active = generations::active(&pool).await.unwrap().unwrap();
    assert_eq!(
        (active.number, active.state.as_str()),
        (second.number, "active")
    );
    let old = generations::get(&pool, first.number)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.state, "retired");
    assert!(generations::drop_generation(&pool, &active).await.is_err());
    generations::drop_generation(&pool, &old).await.unwrap();
    let schemas: Vec<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'rm\\_%'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(schemas, vec![second.schema]);
}
