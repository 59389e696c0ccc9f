//! What snapserver's JSON-RPC says about its clients, read into the rooms the host page shows.
//! Lenient on purpose: snapserver 0.26 (Debian 12) and 0.28+ differ in fields we do not use,
//! and a client missing a field is shown with what it has rather than dropping the update.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::hub::SnapRoomView;

/// A snapclient as snapserver describes it (`Server.GetStatus`, `Client.OnConnect`, …).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Client {
    /// The name given in Snapcast's apps (empty when none was).
    pub given: String,
    /// The client machine's host name.
    pub host: String,
    pub connected: bool,
    pub volume: Volume,
    pub latency_ms: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Volume {
    pub percent: u32,
    pub muted: bool,
}

impl Volume {
    /// A `volume` object, its percent clamped to 0..=100.
    pub fn read(v: &Value) -> Option<Volume> {
        Volume::deserialize(v).ok().map(Volume::clamped)
    }

    fn clamped(self) -> Volume {
        Volume {
            percent: self.percent.min(100),
            ..self
        }
    }
}

/// The wire shape of a client; every field optional.
#[derive(Deserialize, Default)]
#[serde(default)]
struct WireClient {
    id: String,
    connected: bool,
    config: WireConfig,
    host: WireHost,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireConfig {
    name: String,
    latency: i64,
    volume: Volume,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireHost {
    name: String,
}

/// One client object: its id and what it says.
pub fn client(v: &Value) -> Option<(String, Client)> {
    let w = WireClient::deserialize(v).ok()?;
    if w.id.is_empty() {
        return None;
    }
    Some((
        w.id,
        Client {
            given: w.config.name,
            host: w.host.name,
            connected: w.connected,
            volume: w.config.volume.clamped(),
            latency_ms: w.config.latency,
        },
    ))
}

/// Every client of a `server` object (`Server.GetStatus`'s `result.server`, `Server.OnUpdate`'s
/// `params.server`), across its groups.
pub fn clients(server: &Value) -> BTreeMap<String, Client> {
    server["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["clients"].as_array().into_iter().flatten())
        .filter_map(client)
        .collect()
}

/// The version snapserver gives in a `server` object, for the log.
pub fn version(server: &Value) -> &str {
    server["server"]["snapserver"]["version"]
        .as_str()
        .unwrap_or("?")
}

/// The rooms in the order the host page lists them: by name, then id.
pub fn rooms(clients: &BTreeMap<String, Client>) -> Vec<SnapRoomView> {
    let mut rooms: Vec<SnapRoomView> = clients
        .iter()
        .map(|(id, c)| SnapRoomView {
            id: id.clone(),
            name: name(id, c),
            connected: c.connected,
            volume: c.volume.percent,
            muted: c.volume.muted,
            latency_ms: c.latency_ms,
        })
        .collect();
    rooms.sort_by(|a, b| (a.name.to_lowercase(), &a.id).cmp(&(b.name.to_lowercase(), &b.id)));
    rooms
}

/// What the host page calls a room: the name given in Snapcast's apps; else its id, which is
/// the snapclient's `--hostID` (the documented way to name a room); else, for an id that is
/// only a MAC address, the client machine's host name.
fn name(id: &str, c: &Client) -> String {
    let mac = id.split('#').next().unwrap_or(id);
    let is_mac = mac.len() == 17
        && mac
            .split(':')
            .all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit()));
    [c.given.trim(), if is_mac { c.host.trim() } else { id }, id]
        .into_iter()
        .find(|n| !n.is_empty())
        .unwrap_or(id)
        .to_string()
}

/// Applies a notification to the clients; whether it was one about them.
pub fn apply(clients: &mut BTreeMap<String, Client>, method: &str, params: &Value) -> bool {
    let id = params["id"].as_str().unwrap_or_default();
    match method {
        "Client.OnConnect" | "Client.OnDisconnect" => match client(&params["client"]) {
            Some((id, mut c)) => {
                // 0.26 sends the client as it was: the method says which it is now.
                c.connected = method == "Client.OnConnect";
                clients.insert(id, c);
                true
            }
            None => false,
        },
        "Server.OnUpdate" => {
            *clients = self::clients(&params["server"]);
            true
        }
        _ => {
            let Some(c) = clients.get_mut(id) else {
                return false;
            };
            match method {
                "Client.OnVolumeChanged" => match Volume::read(&params["volume"]) {
                    Some(v) => c.volume = v,
                    None => return false,
                },
                "Client.OnLatencyChanged" => c.latency_ms = params["latency"].as_i64().unwrap_or(0),
                "Client.OnNameChanged" => {
                    c.given = params["name"].as_str().unwrap_or_default().to_string()
                }
                _ => return false,
            }
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A client as snapserver 0.26 sends it (trimmed of fields nobody reads).
    fn wire(id: &str, name: &str, host: &str, connected: bool, percent: u32) -> Value {
        json!({"id": id, "connected": connected,
               "config": {"instance": 1, "latency": 0, "name": name,
                          "volume": {"muted": false, "percent": percent}},
               "host": {"arch": "x86_64", "ip": "127.0.0.1", "mac": "00:00:00:00:00:00",
                        "name": host, "os": "Debian"},
               "lastSeen": {"sec": 1, "usec": 2},
               "snapclient": {"name": "Snapclient", "protocolVersion": 2, "version": "0.26.0"}})
    }

    #[test]
    fn a_status_becomes_rooms_named_and_in_order() {
        let server = json!({"groups": [
            {"id": "g1", "clients": [wire("b8:27:eb:00:00:01", "", "kitchen-pi", true, 80)]},
            {"id": "g2", "clients": [wire("garden", "Garden", "pi2", false, 40),
                                     wire("porch#2", "", "pi2", true, 40),
                                     json!({"connected": true})]},
        ], "server": {"snapserver": {"version": "0.26.0"}}});
        let rooms = rooms(&clients(&server));
        let names: Vec<_> = rooms.iter().map(|r| (&*r.id, &*r.name)).collect();
        assert_eq!(
            names,
            [
                ("garden", "Garden"),
                ("b8:27:eb:00:00:01", "kitchen-pi"),
                ("porch#2", "porch#2")
            ],
            "given names first; a MAC address is named by its host"
        );
        assert_eq!((rooms[0].connected, rooms[0].volume), (false, 40));
        assert_eq!(version(&server), "0.26.0");
    }

    #[test]
    fn notifications_change_the_rooms_they_name() {
        let mut c =
            clients(&json!({"groups": [{"clients": [wire("k", "Kitchen", "h", true, 80)]}]}));
        let vol = json!({"id": "k", "volume": {"muted": true, "percent": 30}});
        assert!(apply(&mut c, "Client.OnVolumeChanged", &vol));
        assert_eq!(
            c["k"].volume,
            Volume {
                percent: 30,
                muted: true
            }
        );
        assert!(apply(
            &mut c,
            "Client.OnNameChanged",
            &json!({"id": "k", "name": ""})
        ));
        assert_eq!(rooms(&c)[0].name, "k", "no given name: the id");
        let gone = json!({"id": "k", "client": wire("k", "Kitchen", "h", true, 30)});
        assert!(apply(&mut c, "Client.OnDisconnect", &gone));
        assert!(!c["k"].connected);
        let new = json!({"id": "g", "client": wire("g", "Garden", "h2", true, 50)});
        assert!(apply(&mut c, "Client.OnConnect", &new));
        assert_eq!(c.len(), 2);
        // Not about clients, or about one unknown, or malformed: nothing changes.
        assert!(!apply(
            &mut c,
            "Stream.OnProperties",
            &json!({"id": "jukebox"})
        ));
        assert!(!apply(
            &mut c,
            "Client.OnVolumeChanged",
            &json!({"id": "nobody"})
        ));
        assert!(!apply(
            &mut c,
            "Client.OnVolumeChanged",
            &json!({"id": "g", "volume": 7})
        ));
        assert!(apply(
            &mut c,
            "Server.OnUpdate",
            &json!({"server": {"groups": []}})
        ));
        assert!(c.is_empty());
    }
}
