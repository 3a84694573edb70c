"""The door-check display: a local web page showing whether a phone with a contact-tracing
app is at the door, fed by a live state file that the daemon writes."""
