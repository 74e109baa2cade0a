//! (being written)

/// Runs the controller until dropped.
pub async fn run(_client: kube::Client, _config: crate::Config) {
    std::future::pending::<()>().await
}
