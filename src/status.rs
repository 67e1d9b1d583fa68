//! What cluster mode writes back to the API server, by the elected leader
//! only: `status.loadBalancer.ingress` of the Ingresses it serves (cleared on
//! those it stops serving), BalancerPolicy conditions, and a Warning Event
//! for each rejected Ingress.
//!
//! Every write is a merge patch, sent only when the value differs from what
//! the cache shows, and each checks leadership right before it goes out: a
//! replica that loses the Lease stops writing at once. The writer runs apart
//! from the sync loop, so a slow API server delays status, never routing.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::compile::{CONTROLLER_NAME, PolicyStatus, Problem, Severity};
use crate::crd::BalancerPolicy;
use crate::leader::Leader;
use crate::source::ObjectKey;
use crate::source::kube::{Caches, Changes};

/// Status writes in flight at once (a new leader may have thousands).
const CONCURRENT_WRITES: usize = 8;
/// Status is compared with the caches this often even when nothing was
/// signalled, to repair what someone else overwrote. Cheap: no write unless
/// something differs.
const RESYNC_EVERY: Duration = Duration::from_secs(30);
/// The API server refuses longer Event notes.
const MAX_NOTE: usize = 1024;

/// What the live table serves, as the status writer needs it.
#[derive(Debug, Default)]
pub struct Served {
    /// Shared with the compiler, which keeps it while the set is unchanged.
    pub ingresses: Arc<[ObjectKey]>,
    pub policies: Vec<PolicyStatus>,
    pub problems: Vec<Problem>,
}

/// Where the addresses written into Ingress status come from.
#[derive(Clone, Debug, Default)]
pub struct AddressConfig {
    /// `--publish-status-address`: used as given.
    pub fixed: Vec<String>,
    /// `--publish-service`: its load-balancer addresses, else cluster IP.
    pub service: Option<ObjectKey>,
}

/// Writes status and Events while this replica leads.
pub struct StatusWriter {
    client: Client,
    caches: Caches,
    addresses: AddressConfig,
    leader: Leader,
    recorder: Recorder,
    /// Ingress status written, with the resourceVersion the cache showed
    /// before: until the cache moves past it, the write is not rewritten.
    ingress_written: HashMap<ObjectKey, (Option<String>, Vec<IngressLoadBalancerIngress>)>,
    policy_written: HashMap<ObjectKey, (Option<String>, Vec<Condition>)>,
    /// Address lists written before the current one: an Ingress not served
    /// that still shows one of them was ours, and is cleared.
    previous: Vec<Vec<IngressLoadBalancerIngress>>,
    /// Rejections already reported as Events, by Ingress and message.
    evented: HashSet<(ObjectKey, String)>,
}

/// One status write.
enum Write {
    Ingress {
        key: ObjectKey,
        seen: Option<String>,
        addresses: Vec<IngressLoadBalancerIngress>,
    },
    Policy {
        key: ObjectKey,
        seen: Option<String>,
        conditions: Vec<Condition>,
    },
}

// === impl StatusWriter ===

impl StatusWriter {
    pub fn new(
        client: Client,
        caches: Caches,
        addresses: AddressConfig,
        leader: Leader,
        identity: String,
    ) -> Self {
        let reporter = Reporter {
            controller: CONTROLLER_NAME.to_string(),
            instance: Some(identity),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            caches,
            addresses,
            leader,
            ingress_written: HashMap::new(),
            policy_written: HashMap::new(),
            previous: Vec::new(),
            evented: HashSet::new(),
        }
    }

    /// Runs until `served` closes: after every publish, every status-only
    /// change, on becoming leader, and every [`RESYNC_EVERY`].
    pub fn spawn(
        mut self,
        mut served: watch::Receiver<Option<Arc<Served>>>,
        changes: Arc<Changes>,
    ) -> JoinHandle<()> {
        if self.addresses.fixed.is_empty() && self.addresses.service.is_none() {
            tracing::info!(
                "neither --publish-service nor --publish-status-address given: Ingress status is left alone"
            );
        }
        tokio::spawn(async move {
            let mut resync = tokio::time::interval(RESYNC_EVERY);
            resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut electing = true;
            loop {
                tokio::select! {
                    changed = served.changed() => if changed.is_err() { return },
                    () = changes.status_changed() => {}
                    alive = self.leader.changed(), if electing => electing = alive,
                    _ = resync.tick() => {}
                }
                let Some(current) = served.borrow_and_update().clone() else {
                    continue;
                };
                if self.leader.is_leader() {
                    self.sync(&current).await;
                }
            }
        })
    }

    /// Brings every status in line with `served`, and reports new rejections.
    pub async fn sync(&mut self, served: &Served) {
        let mut writes = self.ingress_writes(served);
        writes.extend(self.policy_writes(served));
        let client = &self.client;
        let leader = &self.leader;
        let done: Vec<Write> = futures::stream::iter(writes)
            .map(|write| async move { write.send(client, leader).await.then_some(write) })
            .buffer_unordered(CONCURRENT_WRITES)
            .filter_map(|w| async move { w })
            .collect()
            .await;
        for write in done {
            match write {
                Write::Ingress {
                    key,
                    seen,
                    addresses,
                } => {
                    self.ingress_written.insert(key, (seen, addresses));
                }
                Write::Policy {
                    key,
                    seen,
                    conditions,
                } => {
                    self.policy_written.insert(key, (seen, conditions));
                }
            }
        }
        self.report_rejections(served).await;
    }

    fn ingress_writes(&mut self, served: &Served) -> Vec<Write> {
        let Some(ours) = self.addresses() else {
            return Vec::new();
        };
        if self.previous.last() != Some(&ours) {
            self.previous.retain(|p| p != &ours);
            self.previous.push(ours.clone());
            // A handful is plenty: addresses rarely change.
            if self.previous.len() > 8 {
                self.previous.remove(0);
            }
        }
        let serving: HashSet<&ObjectKey> = served.ingresses.iter().collect();
        let mut writes = Vec::new();
        let mut present = HashSet::new();
        for ingress in self.caches.ingresses.state() {
            let key = ObjectKey::of(&ingress.metadata);
            present.insert(key.clone());
            let current = load_balancer(&ingress);
            let wanted = if serving.contains(&key) {
                ours.clone()
            } else if !current.is_empty() && self.previous.contains(&current) {
                // We wrote it, and no longer serve it: another controller
                // may now, and must not find our address there.
                Vec::new()
            } else {
                continue;
            };
            let seen = ingress.metadata.resource_version.clone();
            let pending = self
                .ingress_written
                .get(&key)
                .is_some_and(|(rv, w)| *rv == seen && *w == wanted);
            if current != wanted && !pending {
                writes.push(Write::Ingress {
                    key,
                    seen,
                    addresses: wanted,
                });
            }
        }
        self.ingress_written.retain(|k, _| present.contains(k));
        writes
    }

    fn policy_writes(&mut self, served: &Served) -> Vec<Write> {
        let mut writes = Vec::new();
        for status in &served.policies {
            let Some(policy) = self.caches.balancer_policies.get(&status.policy) else {
                continue;
            };
            let existing = policy
                .status
                .as_ref()
                .map(|s| s.conditions.as_slice())
                .unwrap_or_default();
            let wanted = conditions(status, existing);
            let seen = policy.metadata.resource_version.clone();
            let pending = self
                .policy_written
                .get(&status.policy)
                .is_some_and(|(rv, w)| *rv == seen && same_conditions(w, &wanted));
            if !same_conditions(existing, &wanted) && !pending {
                writes.push(Write::Policy {
                    key: status.policy.clone(),
                    seen,
                    conditions: wanted,
                });
            }
        }
        let keep: HashSet<&ObjectKey> = served.policies.iter().map(|p| &p.policy).collect();
        self.policy_written.retain(|k, _| keep.contains(k));
        writes
    }

    /// The addresses to write, sorted; `None` when status is not managed or
    /// the published Service is not known yet (nothing is written then,
    /// rather than clearing everything).
    fn addresses(&self) -> Option<Vec<IngressLoadBalancerIngress>> {
        let mut out = if !self.addresses.fixed.is_empty() {
            self.addresses.fixed.iter().map(|a| address(a)).collect()
        } else {
            let key = self.addresses.service.as_ref()?;
            let store = self.caches.publish_service.as_ref()?;
            let service = store
                .state()
                .into_iter()
                .find(|s| ObjectKey::of(&s.metadata) == *key)?;
            service_addresses(&service)
        };
        sort(&mut out);
        out.dedup();
        (!out.is_empty()).then_some(out)
    }

    /// A Warning Event on each Ingress with a rejection not reported yet.
    async fn report_rejections(&mut self, served: &Served) {
        let current: HashSet<(ObjectKey, String)> = served
            .problems
            .iter()
            .filter(|p| p.kind == "Ingress" && p.severity == Severity::Rejected)
            .map(|p| (p.object.clone(), p.message.clone()))
            .collect();
        // A rejection that went away and comes back is reported again.
        self.evented.retain(|e| current.contains(e));
        let mut new: Vec<_> = current.difference(&self.evented).cloned().collect();
        new.sort();
        for (key, message) in new {
            let Some(ingress) = self.caches.ingresses.get(&key) else {
                continue;
            };
            if !self.leader.is_leader() {
                return;
            }
            let reason = if message.contains("conflicts with") {
                "Conflict"
            } else {
                "Rejected"
            };
            let event = Event {
                type_: EventType::Warning,
                reason: reason.into(),
                note: Some(truncate(&message, MAX_NOTE)),
                action: "Route".into(),
                secondary: None,
            };
            match self
                .recorder
                .publish(&event, &ingress.object_ref(&()))
                .await
            {
                Ok(()) => {
                    tracing::info!(namespace = %key.namespace, name = %key.name, reason, "Event recorded: {message}");
                    self.evented.insert((key, message));
                }
                Err(error) => {
                    tracing::warn!(namespace = %key.namespace, name = %key.name, %error, "cannot record an Event")
                }
            }
        }
    }
}

// === impl Write ===

impl Write {
    /// Sends the patch if this replica still leads. `true` when written.
    async fn send(&self, client: &Client, leader: &Leader) -> bool {
        if !leader.is_leader() {
            return false;
        }
        let params = PatchParams::default();
        let (kind, key, result) = match self {
            Write::Ingress { key, addresses, .. } => {
                let api: Api<Ingress> = Api::namespaced(client.clone(), &key.namespace);
                // `null` removes the list: a cleared status has no entry.
                let list = if addresses.is_empty() {
                    json!(null)
                } else {
                    json!(addresses)
                };
                let patch = json!({"status": {"loadBalancer": {"ingress": list}}});
                (
                    "Ingress",
                    key,
                    api.patch_status(&key.name, &params, &Patch::Merge(&patch))
                        .await
                        .map(drop),
                )
            }
            Write::Policy {
                key, conditions, ..
            } => {
                let api: Api<BalancerPolicy> = Api::namespaced(client.clone(), &key.namespace);
                let patch = json!({"status": {"conditions": conditions}});
                (
                    "BalancerPolicy",
                    key,
                    api.patch_status(&key.name, &params, &Patch::Merge(&patch))
                        .await
                        .map(drop),
                )
            }
        };
        match result {
            Ok(()) => {
                match self {
                    Write::Ingress { addresses, .. } => {
                        let shown: Vec<&str> = addresses
                            .iter()
                            .filter_map(|a| a.ip.as_deref().or(a.hostname.as_deref()))
                            .collect();
                        tracing::info!(kind, namespace = %key.namespace, name = %key.name, addresses = ?shown, "status updated");
                    }
                    Write::Policy { .. } => {
                        tracing::info!(kind, namespace = %key.namespace, name = %key.name, "status updated")
                    }
                }
                true
            }
            // Deleted meanwhile: nothing to write.
            Err(kube::Error::Api(status)) if status.code == 404 => false,
            Err(error) => {
                tracing::warn!(kind, namespace = %key.namespace, name = %key.name, %error, "cannot update status");
                false
            }
        }
    }
}

/// An Ingress's `status.loadBalancer.ingress`, sorted, ports dropped (this
/// controller never writes them).
fn load_balancer(ingress: &Ingress) -> Vec<IngressLoadBalancerIngress> {
    let mut out: Vec<_> = ingress
        .status
        .iter()
        .filter_map(|s| s.load_balancer.as_ref())
        .filter_map(|lb| lb.ingress.as_ref())
        .flatten()
        .map(|a| IngressLoadBalancerIngress {
            ip: a.ip.clone(),
            hostname: a.hostname.clone(),
            ports: None,
        })
        .collect();
    sort(&mut out);
    out
}

/// `10.0.0.9` is an IP; anything else a host name.
fn address(text: &str) -> IngressLoadBalancerIngress {
    let text = text.trim();
    if text.parse::<IpAddr>().is_ok() {
        IngressLoadBalancerIngress {
            ip: Some(text.to_string()),
            ..Default::default()
        }
    } else {
        IngressLoadBalancerIngress {
            hostname: Some(text.to_string()),
            ..Default::default()
        }
    }
}

/// A Service's load-balancer IPs and host names and external IPs; when it
/// has none, its cluster IPs (an `ExternalName` Service: its name).
fn service_addresses(service: &Service) -> Vec<IngressLoadBalancerIngress> {
    let mut out: Vec<_> = service
        .status
        .iter()
        .filter_map(|s| s.load_balancer.as_ref())
        .filter_map(|lb| lb.ingress.as_ref())
        .flatten()
        .map(|a| IngressLoadBalancerIngress {
            ip: a.ip.clone(),
            hostname: a.hostname.clone(),
            ports: None,
        })
        .filter(|a| a.ip.is_some() || a.hostname.is_some())
        .collect();
    let Some(spec) = service.spec.as_ref() else {
        return out;
    };
    out.extend(spec.external_ips.iter().flatten().map(|ip| address(ip)));
    if !out.is_empty() {
        return out;
    }
    if spec.type_.as_deref() == Some("ExternalName") {
        return spec.external_name.iter().map(|n| address(n)).collect();
    }
    spec.cluster_ips
        .iter()
        .flatten()
        .chain(spec.cluster_ip.iter())
        .filter(|ip| !ip.is_empty() && *ip != "None")
        .map(|ip| address(ip))
        .collect()
}

fn sort(list: &mut [IngressLoadBalancerIngress]) {
    list.sort_by(|a, b| (&a.ip, &a.hostname).cmp(&(&b.ip, &b.hostname)));
}

/// The three conditions of a policy, each keeping its transition time when
/// its status did not change.
fn conditions(status: &PolicyStatus, existing: &[Condition]) -> Vec<Condition> {
    let (accepted, accepted_reason, accepted_message) = match &status.accepted {
        Ok(()) => (
            true,
            "Accepted",
            "the policy applies to its target".to_string(),
        ),
        Err(reason) if status.conflicted_with.is_some() => (false, "Conflicted", reason.clone()),
        Err(reason) => (false, "Invalid", reason.clone()),
    };
    let (resolved, resolved_reason, resolved_message) = match &status.resolved_refs {
        Ok(()) => (true, "ResolvedRefs", "the target exists".to_string()),
        Err(reason) => (false, "TargetNotFound", reason.clone()),
    };
    let (conflicted, conflicted_reason, conflicted_message) = match &status.conflicted_with {
        Some(owner) => (
            true,
            "Conflicted",
            format!("the older BalancerPolicy {owner} has the same target"),
        ),
        None => (
            false,
            "NoConflict",
            "no older policy has the same target".to_string(),
        ),
    };
    let now = Time(Timestamp::now());
    [
        ("Accepted", accepted, accepted_reason, accepted_message),
        ("ResolvedRefs", resolved, resolved_reason, resolved_message),
        (
            "Conflicted",
            conflicted,
            conflicted_reason,
            conflicted_message,
        ),
    ]
    .into_iter()
    .map(|(type_, ok, reason, message)| {
        let status_text = if ok { "True" } else { "False" };
        let since = existing
            .iter()
            .find(|c| c.type_ == type_ && c.status == status_text)
            .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
        Condition {
            type_: type_.to_string(),
            status: status_text.to_string(),
            reason: reason.to_string(),
            message,
            observed_generation: status.generation,
            last_transition_time: since,
        }
    })
    .collect()
}

/// Equal but for transition times (which follow from the rest).
fn same_conditions(a: &[Condition], b: &[Condition]) -> bool {
    let key = |c: &Condition| {
        (
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
            c.observed_generation,
        )
    };
    let mut a: Vec<_> = a.iter().map(key).collect();
    let mut b: Vec<_> = b.iter().map(key).collect();
    a.sort();
    b.sort();
    a == b
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(value: serde_json::Value) -> Service {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn addresses_come_from_the_load_balancer_else_the_cluster_ip() {
        let lb = service(json!({
            "spec": {"clusterIP": "10.96.0.7"},
            "status": {"loadBalancer": {"ingress": [{"hostname": "lb.example"}, {"ip": "203.0.113.9"}]}}
        }));
        let got = service_addresses(&lb);
        assert_eq!(got.len(), 2);
        assert!(got.iter().any(|a| a.ip.as_deref() == Some("203.0.113.9")));
        let cluster = service(json!({"spec": {"clusterIP": "10.96.0.7"}}));
        assert_eq!(
            service_addresses(&cluster)[0].ip.as_deref(),
            Some("10.96.0.7")
        );
        let headless = service(json!({"spec": {"clusterIP": "None"}}));
        assert!(service_addresses(&headless).is_empty());
        assert_eq!(
            address("lb.example").hostname.as_deref(),
            Some("lb.example")
        );
        assert_eq!(address("fd00::1").ip.as_deref(), Some("fd00::1"));
    }

    #[test]
    fn conditions_keep_their_transition_time_while_unchanged() {
        let mut status = PolicyStatus {
            policy: ObjectKey::new("shop", "p"),
            generation: Some(3),
            accepted: Ok(()),
            resolved_refs: Err("Service shop/web not found".into()),
            conflicted_with: None,
        };
        let first = conditions(&status, &[]);
        assert_eq!(first.len(), 3);
        assert!(first.iter().all(|c| c.observed_generation == Some(3)));
        let resolved = first.iter().find(|c| c.type_ == "ResolvedRefs").unwrap();
        assert_eq!(
            (resolved.status.as_str(), resolved.reason.as_str()),
            ("False", "TargetNotFound")
        );

        let mut old = first.clone();
        for c in &mut old {
            c.last_transition_time = Time(Timestamp::UNIX_EPOCH);
        }
        let again = conditions(&status, &old);
        assert!(same_conditions(&again, &first));
        assert!(
            again
                .iter()
                .all(|c| c.last_transition_time.0 == Timestamp::UNIX_EPOCH)
        );

        status.conflicted_with = Some(ObjectKey::new("shop", "older"));
        status.accepted =
            Err("the older BalancerPolicy shop/older already targets shop/web".into());
        let conflicted = conditions(&status, &old);
        assert!(!same_conditions(&conflicted, &first));
        let accepted = conflicted.iter().find(|c| c.type_ == "Accepted").unwrap();
        assert_eq!(
            (accepted.status.as_str(), accepted.reason.as_str()),
            ("False", "Conflicted")
        );
        assert_ne!(accepted.last_transition_time.0, Timestamp::UNIX_EPOCH);
    }

    #[test]
    fn notes_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("short", 10), "short");
        let long = "é".repeat(600);
        let cut = truncate(&long, MAX_NOTE);
        assert!(cut.len() <= MAX_NOTE && cut.ends_with("..."));
    }
}
