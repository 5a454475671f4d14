"""The moderation engine: pure code that judges one message (see ``core.Engine``); the services in
``apps.moderation.services`` feed it the database's rules, domains, names and classifier, and record what it
decides."""
