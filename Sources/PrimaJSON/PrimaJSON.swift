// PrimaJSON: see Formats/prima-checkpoint.md.
