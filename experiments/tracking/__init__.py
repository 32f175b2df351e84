"""Where runs are recorded: Sacred observers (MongoDB, files), the outage-safe queue, the
local SecantusDB server, Omniboard, tags and credential redaction."""
