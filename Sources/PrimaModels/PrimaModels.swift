// PrimaModels: see Formats/prima-checkpoint.md.
