//! The all-in-one OpenAPI document is the command and query documents merged: no schema of one
//! may silently replace a different schema of the same name in the other.

use utoipa::OpenApi;

#[test]
fn command_and_query_documents_share_no_schema_name_with_different_shapes() {
    let commands = command_service::openapi::ApiDoc::openapi();
    let queries = query_service::openapi::ApiDoc::openapi();
    let (c, q) = (
        commands.components.expect("components").schemas,
        queries.components.expect("components").schemas,
    );
    let clashes: Vec<&String> = c
        .iter()
        .filter(|(name, schema)| {
            q.get(*name).is_some_and(|other| {
                serde_json::to_value(other).unwrap() != serde_json::to_value(schema).unwrap()
            })
        })
        .map(|(name, _)| name)
        .collect();
    assert!(
        clashes.is_empty(),
        "schemas named alike but shaped differently: {clashes:?}"
    );
}
