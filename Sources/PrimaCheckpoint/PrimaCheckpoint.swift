// PrimaCheckpoint: see Formats/prima-checkpoint.md.
