"""comment_svc: comments on cards, decided entirely from its own replicas of users, projects, members and cards."""
