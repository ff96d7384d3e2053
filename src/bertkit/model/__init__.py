"""The model core: the encoder (`bert`), task heads (`heads`) and Hugging Face checkpoints (`checkpoint`)."""
