import PrimaCheckpoint

/// The checks every tool that reads a checkpoint's components runs first (Formats/prima-checkpoint.md §3.3–§4,
/// §8): each component's configuration through `StoredConfig` and its tensors through `TensorValidation`, and the
/// `/prima` heads' tensors as `PrimaHeads` reads them. `prima-quantize` runs the component part on its input
/// before writing anything (it copies the heads unread); `prima-convert export` on the component it exports.
public enum StoredValidation {
    /// Validates `roles` of `checkpoint` (every role when nil) and, when `heads` is true, its `/prima` group;
    /// throws the first problem as a one-line error (every one of them is bad input).
    public static func validate(_ checkpoint: Checkpoint, roles: [ComponentRole]? = nil, heads: Bool = true) throws {
        for role in roles ?? checkpoint.roles {
            let component = try checkpoint.component(role)
            try TensorValidation.validate(component, config: try StoredConfig.read(component))
        }
        if heads && checkpoint.extraGroups.contains("prima") { _ = try PrimaHeads(checkpoint: checkpoint) }
    }
}
