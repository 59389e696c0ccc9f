//! The body of `POST /api/host/{action}`: the first byte picks the action, the rest is the body.
#![no_main]

/// The host actions, and two names that are none.
const ACTIONS: [&str; 22] = [
    "play",
    "pause",
    "skip",
    "seek",
    "set_volume",
    "remove",
    "move",
    "ban",
    "settings",
    "announce",
    "rescan",
    "host_sessions",
    "logout",
    "logout_all",
    "pair_screen",
    "remove_screen",
    "room_volume",
    "room_mute",
    "like",
    "request",
    "vote",
    "frobnicate",
];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    jukebox::untrusted::host_body(ACTIONS[pick as usize % ACTIONS.len()], body);
});
