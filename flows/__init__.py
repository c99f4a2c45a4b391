"""What the server does with its models for a request, between the protocols (`api/`) and the facade
(`supervisor.core.Supervisor`): single requests and their waiting, transcription split on the VAD, punctuation
that degrades to plain text, sentences with times, and the live 2pass session."""
