//! The standalone `fake-apiserver` binary, reached through the kubeconfig it
//! writes, with manifests preloaded from a folder.

use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::within;

#[tokio::test]
async fn the_binary_serves_preloaded_manifests() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let manifests = dir.path().join("manifests");
        std::fs::create_dir(&manifests).unwrap();
        std::fs::write(
            manifests.join("svc.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: demo\nspec:\n  ports: [{port: 80}]\n",
        )
        .unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fake-apiserver"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--manifests")
            .arg(&manifests)
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        while !kubeconfig.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The file may be seen before it is fully written: retry the read.
        let config = loop {
            if let Ok(kc) = Kubeconfig::read_from(&kubeconfig)
                && let Ok(config) = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await
            {
                break config;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let services: Api<Service> = Api::all(kube::Client::try_from(config).unwrap());
        let list = services.list(&ListParams::default()).await.unwrap();
        let names: Vec<_> = list.items.iter().filter_map(|s| s.metadata.name.clone()).collect();
        assert_eq!(names, ["web"]);
        child.kill().await.unwrap();
    })
    .await;
}
