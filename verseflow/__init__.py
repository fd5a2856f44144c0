"""VerseFlow's shared kernel: settings, database, migrations, events, security, metrics, logs."""
