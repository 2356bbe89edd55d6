//! Nothing lost, nothing disturbed: concurrent runs, hostile programs, bad outputs.

use rprof::*;

/// Bytes `alloc_<k>` of the concurrent_runs fixture allocates: 100 vectors of 1000..1100 bytes.
const ALLOC_BYTES: i64 = 100 * 1000 + 99 * 100 / 2;

#[test]
fn concurrent_runs_in_one_target_dir_each_keep_their_own_profile() {
    let fixture = Fixture::copy("concurrent_runs");
    // Build once, so that the concurrent runs race on sessions, not on cargo's build lock.
    run(fixture.rprof(&[
        "test",
        "--memprofile",
        "warm.prof",
        "--memprofilerate",
        "1",
        "--",
        "--exact",
        "tests::t1",
    ]))
    .expect_code(0);
    for round in 0..10 {
        // Eight runs at once, t0 the long one (4 s): each prunes sessions as it starts.
        let children: Vec<_> = (0..8)
            .map(|k| {
                let mut cmd = fixture.rprof(&[
                    "test",
                    "--memprofile",
                    &format!("m{k}.prof"),
                    "--memprofilerate",
                    "1",
                    "--",
                    "--exact",
                    &format!("tests::t{k}"),
                ]);
                cmd.stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
                cmd.spawn().expect("cannot start cargo rprof")
            })
            .collect();
        for (k, child) in children.into_iter().enumerate() {
            let out = child.wait_with_output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(0),
                "round {round}, run {k}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let p = read_profile(&fixture.path(&format!("m{k}.prof")));
            for j in 0..8 {
                let bytes = function_cum(&p, "alloc_space", &format!("concurrent_runs::alloc_{j}"));
                let want = if j == k { ALLOC_BYTES } else { 0 };
                assert_eq!(bytes, want, "round {round}: run {k}'s profile, alloc_{j}");
            }
        }
    }
}
