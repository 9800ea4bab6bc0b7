// Re-embed the migrations when a file is added to `sql/` (the macro alone does not notice).
fn main() {
    println!("cargo:rerun-if-changed=sql");
}
