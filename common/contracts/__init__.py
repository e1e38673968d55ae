"""What the services agree on, named as contracts: each service's manifest and the topology that lists
them, the `newNotif` notice, the user replica, the replica checks `swarm check` runs. Data and small
shared handlers only; a rule of one service's business belongs in that service."""
