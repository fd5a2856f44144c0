"""The OpenSubsonic API: the player apps people already use, on VerseFlow's catalog, playlists and plays."""
