/// The merge methods MergeKit knows, in the order `merge-cli methods` lists them.
public enum MethodRegistry {
    public static let all: [MethodInfo] = [
        TaskArithmetic.info,
        TIES.info,
        DARE.info,
        Linear.info,
        Breadcrumbs.info,
        ModelStock.info,
        MetaGPT.info,
        MagMax.info,
        TSVM.info,
        IsoC.info,
    ]

    public static func info(named name: String) -> MethodInfo? {
        all.first { $0.name == name }
    }
}
