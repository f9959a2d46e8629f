//! SharedConfig, fetched from the goal state's `SharedConfig` URL (wire.md §4.4). waagent stores the
//! raw text (`/var/lib/waagent/SharedConfig.xml`, read by RDMA setup and others); this parser gives
//! the parts afterburn reads: this VM's `Instance` (matched on `Incarnation/@instance`), its
//! private address and the load-balanced public address of its input endpoints.

use std::net::Ipv4Addr;

use crate::documents::wire::{attr_string, parse_root, DocumentError};

const DOC: &str = "SharedConfig";

/// The parsed SharedConfig.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SharedConfig {
    /// Root attribute `goalStateIncarnation`.
    pub goal_state_incarnation: Option<String>,
    /// `Deployment/@name`.
    pub deployment_name: Option<String>,
    /// `Incarnation/@instance`: this VM's instance name.
    pub instance_name: Option<String>,
    /// `Role/@name`.
    pub role_name: Option<String>,
    /// `Instances/Instance`, in document order.
    pub instances: Vec<Instance>,
}

/// One `Instances/Instance`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Instance {
    /// `@id`, matched against `Incarnation/@instance`. Required.
    pub id: String,
    /// `@address`: the private IPv4 address, as text.
    pub address: Option<String>,
    /// `InputEndpoints/Endpoint`.
    pub input_endpoints: Vec<InputEndpoint>,
}

/// One `InputEndpoints/Endpoint`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InputEndpoint {
    pub name: Option<String>,
    /// `@address`, `host:port`.
    pub address: Option<String>,
    pub protocol: Option<String>,
    /// `@loadBalancedPublicAddress`, `host:port`.
    pub load_balanced_public_address: Option<String>,
}

impl SharedConfig {
    /// The `Instance` whose `@id` equals `Incarnation/@instance`.
    pub fn own_instance(&self) -> Option<&Instance> {
        let name = self.instance_name.as_deref()?;
        self.instances.iter().find(|i| i.id == name)
    }

    /// This VM's private IPv4 address (`Instance/@address`).
    pub fn private_ipv4(&self) -> Option<Ipv4Addr> {
        self.own_instance()?.address.as_deref()?.trim().parse().ok()
    }

    /// This VM's public IPv4 address: the host part of the first input endpoint's
    /// `loadBalancedPublicAddress`.
    pub fn public_ipv4(&self) -> Option<Ipv4Addr> {
        self.own_instance()?.input_endpoints.iter().find_map(|e| {
            let addr = e.load_balanced_public_address.as_deref()?;
            addr.rsplit_once(':').map_or(addr, |(host, _)| host).parse().ok()
        })
    }
}

/// Parse a SharedConfig document. An `Instance` without `@id` is an error naming it.
pub fn parse_shared_config(text: &str) -> Result<SharedConfig, DocumentError> {
    let root = parse_root(text, DOC)?;
    let mut instances = Vec::new();
    for (index, inst) in
        root.child("Instances").into_iter().flat_map(|i| i.children_named("Instance")).enumerate()
    {
        let id = attr_string(inst, "id").ok_or_else(|| DocumentError::Missing {
            document: DOC,
            path: format!("SharedConfig/Instances/Instance[{index}]/@id"),
        })?;
        let input_endpoints = inst
            .child("InputEndpoints")
            .into_iter()
            .flat_map(|e| e.children_named("Endpoint"))
            .map(|e| InputEndpoint {
                name: attr_string(e, "name"),
                address: attr_string(e, "address"),
                protocol: attr_string(e, "protocol"),
                load_balanced_public_address: attr_string(e, "loadBalancedPublicAddress"),
            })
            .collect();
        instances.push(Instance { id, address: attr_string(inst, "address"), input_endpoints });
    }
    Ok(SharedConfig {
        goal_state_incarnation: attr_string(&root, "goalStateIncarnation"),
        deployment_name: root.child("Deployment").and_then(|e| attr_string(e, "name")),
        instance_name: root.child("Incarnation").and_then(|e| attr_string(e, "instance")),
        role_name: root.child("Role").and_then(|e| attr_string(e, "name")),
        instances,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC_TEXT: &str = r#"<SharedConfig goalStateIncarnation="2"><Incarnation instance="vm_IN_1"/>
        <Instances><Instance id="vm_IN_0" address="10.0.0.9"/>
        <Instance id="vm_IN_1" address="10.0.0.4"><InputEndpoints>
          <Endpoint name="a" address="10.0.0.4:22" protocol="tcp"/>
          <Endpoint name="b" address="10.0.0.4:80" loadBalancedPublicAddress="52.1.2.3:80"/>
        </InputEndpoints></Instance></Instances></SharedConfig>"#;

    #[test]
    fn own_instance_addresses() {
        let sc = parse_shared_config(DOC_TEXT).unwrap();
        assert_eq!(sc.instances.len(), 2);
        assert_eq!(sc.own_instance().map(|i| i.id.as_str()), Some("vm_IN_1"));
        assert_eq!(sc.private_ipv4(), Some(Ipv4Addr::new(10, 0, 0, 4)));
        assert_eq!(sc.public_ipv4(), Some(Ipv4Addr::new(52, 1, 2, 3)));
    }

    #[test]
    fn instance_without_id_is_named() {
        let err = parse_shared_config(
            "<SharedConfig><Instances><Instance address=\"1.2.3.4\"/></Instances></SharedConfig>",
        )
        .unwrap_err();
        assert!(err.to_string().contains("Instance[0]/@id"), "{err}");
        let empty = parse_shared_config("<SharedConfig/>").unwrap();
        assert_eq!(empty.private_ipv4(), None);
    }
}
