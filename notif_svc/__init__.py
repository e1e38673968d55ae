"""notif_svc: every user's notification feed, filled from newNotif events, polled, long-polled or pushed."""
