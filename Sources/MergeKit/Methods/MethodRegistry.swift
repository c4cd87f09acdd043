/// The merge methods MergeKit knows, in the order `merge-cli methods` lists them: the one list a
/// new method is added to (its description, in its own file, says everything else).
public enum MethodRegistry {
    public static let methods: [any DescribedMethod.Type] = [
        TaskArithmetic.self,
        TIES.self,
        DARE.self,
        DELLA.self,
        Linear.self,
        Breadcrumbs.self,
        ModelStock.self,
        MetaGPT.self,
        MagMax.self,
        TSVM.self,
        IsoC.self,
        SCE.self,
        NearSwap.self,
        Passthrough.self,
        ArceeFusion.self,
        Slerp.self,
        NuSlerp.self,
        MultiSlerp.self,
        Karcher.self,
    ]

    /// Every method's description, in registry order.
    public static let descriptions: [MethodDescription] = methods.map { $0.methodDescription }

    public static var all: [MethodInfo] { descriptions.map(\.info) }

    public static func info(named name: String) -> MethodInfo? {
        all.first { $0.name == name }
    }

    /// The method a recipe or sweep names, with the preset its name selects.
    public static func recipeMethod(named name: String) -> (description: MethodDescription, preset: MethodDescription.Preset)? {
        for description in descriptions {
            if let entry = description.recipeNames.first(where: { $0.name == name }), let preset = description.preset(named: entry.preset) {
                return (description, preset)
            }
        }
        return nil
    }

    /// Every method name a recipe accepts, in registry order.
    public static var recipeNames: [String] { descriptions.flatMap { $0.recipeNames.map(\.name) } }

    /// The rule of a numeric recipe key, whichever method has it first (a key means the same in
    /// every method — `density` is always the kept fraction — except the keys in
    /// `methodSpecificKeys`, which a recipe checks against its own method's rule); `seed` is every
    /// recipe's.
    /// Keys whose values mean different things in different methods, as in mergekit: `t` is
    /// slerp's position in [0, 1] and nearswap's distance threshold.
    static let methodSpecificKeys: Set<String> = ["t"]

    public static func rule(forRecipeKey key: String) -> MethodParameter? {
        if key == "seed" { return .seed }
        return descriptions.lazy.compactMap { $0.parameter(key)?.rule }.first
    }

    /// The per-model recipe keys of any method (for a recipe whose method is unknown).
    static var perModelKeys: [String] {
        var keys: [String] = []
        for key in descriptions.flatMap(\.perModelKeys) where !keys.contains(key) { keys.append(key) }
        return keys
    }
}
