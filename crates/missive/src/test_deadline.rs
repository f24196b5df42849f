//! The deadline every async unit test runs under: a test whose code under test never answers
//! fails instead of hanging the suite.

use std::future::Future;
use std::time::Duration;

/// Long enough for any unit test on a loaded machine, short enough to fail fast.
const TEST_DEADLINE: Duration = Duration::from_secs(30);

/// Runs `test` to its end, or panics when [`TEST_DEADLINE`] passes first.
pub(crate) async fn within<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(TEST_DEADLINE, test)
        .await
        .expect("the test's deadline passed")
}
