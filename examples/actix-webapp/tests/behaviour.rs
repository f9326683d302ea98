//! The adapter behaviour suite (identity-testkit), run against this sample's binary.

identity_testkit::behaviour_suite!(identity_testkit::suite::SampleLauncher::new(env!(
    "CARGO_BIN_EXE_actix-webapp"
)));
