// PrimaConvert: see Formats/prima-checkpoint.md.
