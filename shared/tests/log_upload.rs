//! The daemon's periodic log upload: a zip of the logs, PUT to the HostGAPlugin's vmAgentLog with
//! the container and deployment named, checked on the simulator's side.

use std::time::Duration;

use wala::base::root::HostRoot;
use wala::daemon::{Env, Lane, State, Task};
use wala::platform::endpoint::Endpoint;
use wala::platform::hostgaplugin::{ContainerIdentity, HostGaPluginClient};
use wala_fabric::{Fabric, Listener};

#[test]
fn logs_are_zipped_and_put_to_vm_agent_log() {
    let fabric = Fabric::start_builtin().expect("fabric");
    let dir = tempfile::tempdir().expect("tempdir");
    for d in ["var/log", "var/lib/waagent", "etc"] {
        std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
    }
    std::fs::write(dir.path().join("var/log/waagent.log"), "2026-11-26T00:00:00.000000Z INFO Daemon hello\n")
        .expect("log");
    let hgap = fabric.hgap_addr();
    let identity = ContainerIdentity {
        container_id: "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0".into(),
        config_name: Some("deployment1.role0.config".into()),
    };
    let mut task = wala::daemon::log_collection_task::UploadTask {
        hgap: HostGaPluginClient::new(Endpoint::new(hgap.ip().to_string(), hgap.port())),
        period: Duration::from_secs(3600),
    };
    assert_eq!(task.initial_delay(), Duration::from_secs(300), "waagent's five-minute initial delay");
    assert_eq!(task.lane(), Lane::Own, "collection never holds up the periodic tasks");
    let (root, config, runner) =
        (HostRoot::new(dir.path()), wala::documents::conf::Config::default(), wala::base::cmd::SystemRunner);
    let state = State::default();
    let no_goal_state = task.run(&Env {
        host: wala::host::Host { root: &root, config: &config, runner: &runner },
        state: &state,
    });
    assert!(no_goal_state.is_err(), "nothing to name the upload by before a goal state");
    state.set_goal_state(goal_state(&identity));
    task.run(&Env {
        host: wala::host::Host { root: &root, config: &config, runner: &runner },
        state: &state,
    })
    .expect("upload");
    let puts: Vec<_> = fabric
        .requests()
        .into_iter()
        .filter(|r| r.listener == Listener::Hostgaplugin && r.target == "/vmAgentLog")
        .collect();
    assert_eq!(puts.len(), 1);
    let header = |name: &str| puts[0].header(name).map(str::to_string);
    assert_eq!(header("x-ms-vmagentlog-deploymentid").as_deref(), Some("deployment1"));
    assert_eq!(header("x-ms-containerid").as_deref(), Some("0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"));
    assert_eq!(header("x-ms-client-name").as_deref(), Some("WALinuxAgent"));
    let body = puts[0].body_bytes();
    assert_eq!(&body[..2], b"PK", "a zip");
    let entries = wala::base::ziparchive::read_all(&body).expect("zip");
    assert!(entries.iter().any(|e| e.name.ends_with("waagent.log") && e.data.ends_with(b"hello\n")));
}

/// A goal state naming `who`'s container and configuration.
fn goal_state(who: &ContainerIdentity) -> wala::documents::wire::GoalState {
    wala::documents::wire::GoalState {
        container_id: who.container_id.clone(),
        config_name: who.config_name.clone(),
        ..Default::default()
    }
}
