"""Side-by-side measurements of bertkit against transformers, sentence-transformers and onnxruntime, in one
process on the same inputs. Not part of the library: `bertkit bench ...` runs them from a source checkout,
and transformers is imported only here, as the reference."""
