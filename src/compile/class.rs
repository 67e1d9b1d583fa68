//! Which Ingresses belong to this controller.

use k8s_openapi::api::networking::v1::Ingress;

use super::CompileOptions;
use crate::source::Snapshot;

/// The `spec.controller` of an IngressClass that RustStrom serves.
pub const CONTROLLER_NAME: &str = "ruststrom.io/ingress-controller";
const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// The class names that are ours, and whether class-less Ingresses are.
pub(super) struct Classes<'a> {
    flag: &'a str,
    /// Every IngressClass name, ours or not.
    known: Vec<&'a str>,
    ours: Vec<&'a str>,
    take_classless: bool,
}

impl<'a> Classes<'a> {
    pub(super) fn new(snapshot: &'a Snapshot, options: &'a CompileOptions) -> Self {
        let mut ours = Vec::new();
        let mut default_is_ours = false;
        let known = snapshot
            .ingress_classes
            .keys()
            .map(String::as_str)
            .collect();
        for (name, class) in &snapshot.ingress_classes {
            let controller = class.spec.as_ref().and_then(|s| s.controller.as_deref());
            if controller == Some(CONTROLLER_NAME) {
                ours.push(name.as_str());
                default_is_ours |= class
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                    .is_some_and(|v| v == "true");
            }
        }
        Self {
            flag: &options.ingress_class,
            known,
            ours,
            take_classless: default_is_ours || options.watch_without_class,
        }
    }

    /// `spec.ingressClassName` first; the legacy annotation only when the
    /// field is unset, as the Ingress API documents.
    pub(super) fn is_ours(&self, ingress: &Ingress) -> bool {
        let field = ingress
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref());
        if let Some(class) = field {
            // An IngressClass by that name decides; the flag alone only
            // when no such IngressClass exists (standalone folders often
            // have none).
            return match self.known.contains(&class) {
                true => self.ours.contains(&class),
                false => class == self.flag,
            };
        }
        let legacy = ingress
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION));
        match legacy {
            Some(class) => class == self.flag,
            None => self.take_classless,
        }
    }
}
