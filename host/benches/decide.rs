//! Policy decision cost in process, measured by criterion: the demo page map
//! (`page_map.wasm`, built by `scripts/build-policies`) on fresh instances,
//! on warm instances, and answered from the decision cache, each including
//! building the policy's view of the request. The same request every time.
//!
//!     scripts/build-policies && cargo bench -p herald --bench decide
//!
//! `herald bench policy` measures the same three modes for any set of
//! policies (other languages too) as percentiles; this is the criterion view
//! of the Rust policy, with confidence intervals and change detection
//! between runs.

use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use herald::bench;
use herald::config::Config;
use herald::policy::{Isolation, Limits, PolicyEngine};

fn page_map() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/guests/wasm32-wasip2/guest/page_map.wasm");
    assert!(
        path.is_file(),
        "{} not found: run scripts/build-policies first",
        path.display()
    );
    path
}

fn decide(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = Config::parse("bench", bench::DEMO_MAP).unwrap();
    let request = http::Request::builder()
        .method("GET")
        .uri("https://shop.example/")
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0")
        .header("accept", "text/html,application/xhtml+xml")
        .header("sec-fetch-dest", "document")
        .header("cookie", "session=abc123")
        .body(())
        .unwrap();
    let (parts, ()) = request.into_parts();
    let mut group = c.benchmark_group("decide page_map");
    for (name, isolation, cached) in [
        ("fresh", Isolation::Fresh, false),
        ("reuse", Isolation::Reuse, false),
        ("cached", Isolation::Reuse, true),
    ] {
        let mut limits = Limits::from_config(&config.policy);
        limits.deadline = Duration::from_secs(1);
        limits.cache.entries = if cached { 64 } else { 0 };
        let engine = PolicyEngine::new(limits, None).unwrap();
        let policy = engine
            .load_file(&page_map(), &config.policy.config)
            .unwrap()
            .with_isolation(isolation);
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let req = policy.request_of(&parts, &bench::DEMO_VIEW);
                    let (result, _) = policy.decide(&req).await;
                    assert_eq!(result.unwrap().len(), 5);
                    // The used instance's teardown runs once this task
                    // yields (as in `herald serve`): counted here, so the
                    // mean is the whole cost of a decision.
                    tokio::task::yield_now().await;
                })
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = decide
}
criterion_main!(benches);
