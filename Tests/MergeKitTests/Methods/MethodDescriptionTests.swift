import Testing
@testable import MergeKit

@Suite("Method descriptions")
struct MethodDescriptionTests {
    static let descriptions = MethodRegistry.descriptions

    /// The method a recipe naming `name` gets for an empty tensor, with `parameters` (and models
    /// with `models`' parameters).
    func recipeMethod(_ name: String, _ parameters: [String: ParameterSetting] = [:],
                      models: [[String: ParameterSetting]] = [[:], [:]]) throws -> any MergeMethod {
        let entry = try #require(MethodRegistry.recipeMethod(named: name))
        return try entry.description.build(MethodArguments(preset: entry.preset, global: parameters, models: models,
                                                           tensor: "", t: 0, seed: 0))
    }

    func json(_ method: any MergeMethod) -> String { method.info.name + JSONValue.object(method.parameters).serialized() }

    @Test("Names: one subcommand per method, every recipe name once, each selecting a preset the method has")
    func names() {
        #expect(Set(Self.descriptions.map(\.info.name)).count == Self.descriptions.count)
        #expect(Set(MethodRegistry.recipeNames).count == MethodRegistry.recipeNames.count)
        for description in Self.descriptions {
            #expect(!description.recipeNames.isEmpty, "\(description.info.name)")
            for entry in description.recipeNames {
                #expect(description.preset(named: entry.preset) != nil, "\(entry.name) selects a missing preset \(entry.preset)")
            }
            #expect(Set(description.parameters.map(\.key)).count == description.parameters.count, "\(description.info.name)")
        }
    }

    @Test("Every command-line parameter has a default of its type in the subcommand's preset")
    func commandDefaults() {
        for description in Self.descriptions {
            for parameter in description.commandLineParameters {
                let value = description.commandPreset.defaults[parameter.key]
                let ok: Bool
                switch (parameter.type, value) {
                case (.number(let rule), .number(let v)?): ok = rule.accepts(v)
                case (.seed, .number(let v)?): ok = MethodParameter.seed.accepts(v)
                case (.flag, .bool?): ok = true
                case (.choice(let type), .string(let word)?): ok = type.words.contains(word)
                default: ok = false
                }
                #expect(ok, "\(description.info.name) --\(parameter.flag!): default \(String(describing: value))")
            }
        }
    }

    @Test("A recipe key means the same in every method (one rule, one scope), except the method-specific keys (t), which differ")
    func keysAgree() {
        var seen: [String: MethodDescription.Parameter] = [:]
        var differing = Set<String>()
        for description in Self.descriptions {
            for parameter in description.parameters {
                guard let first = seen[parameter.key] else { seen[parameter.key] = parameter; continue }
                #expect(first.scope == parameter.scope, "\(description.info.name): \(parameter.key)")
                if first.rule != parameter.rule { differing.insert(parameter.key) }
                if !MethodRegistry.methodSpecificKeys.contains(parameter.key) {
                    #expect(first.rule == parameter.rule, "\(description.info.name): \(parameter.key)")
                    #expect(MethodRegistry.rule(forRecipeKey: parameter.key) == parameter.rule)
                }
            }
        }
        // The exceptions are real: each differs between two methods.
        #expect(differing == MethodRegistry.methodSpecificKeys)
        #expect(MethodRegistry.rule(forRecipeKey: "seed") == .seed)
    }

    @Test("A recipe's value of a method-specific key is checked against its own method's rule, at its line")
    func methodSpecificRule() throws {
        func recipe(_ method: String, t: String) throws -> Recipe {
            try Recipe.parse("merge_method: \(method)\nbase_model: a\nmodels:\n  - model: b\nparameters:\n  t: \(t)\n", path: "r.yml")
        }
        // nearswap's t is a distance (any finite number); slerp's a position in [0, 1].
        try recipe("nearswap", t: "5").validateParameters()
        #expect(throws: MergeKitError.self) { try recipe("nearswap", t: ".inf").validateParameters() }
        do {
            try recipe("slerp", t: "5").validateParameters()
            Issue.record("slerp accepted t = 5")
        } catch {
            let text = "\(error)"
            #expect(text.contains("line 6") && text.contains("t must be in [0, 1], not 5"), "\(text)")
        }
    }

    @Test("The declared kind agrees with the method the subcommand's defaults build")
    func kinds() throws {
        for description in Self.descriptions {
            let defaults = description.commandPreset.defaults.filter { key, _ in description.parameter(key)?.flag != nil }
            let method = try description.build(commandLine: defaults, seed: 0)
            let whole = method is any WholeTensorMergeMethod
            let name = description.info.name
            #expect(description.kind.contains(.wholeTensor) == whole, "\(name)")
            #expect(description.kind.contains(.scaled) == (method.lambda != nil), "\(name)")
            #expect(description.kind.contains(.modelStatistics)
                    == (method.statistics.needsModelPasses || method.statistics.majoritySign), "\(name)")
            #expect(description.kind.contains(.perChunk) != whole, "\(name)")
            // Methods merging whole tensors set their own coefficients; so do some per-chunk ones
            // (slerp's t; SCE, NearSwap, Passthrough, Arcee Fusion: mergekit gives them no weights).
            if whole { #expect(description.inputs == .unweighted, "\(name)") }
        }
    }

    @Test("The subcommand's defaults build each method's paper defaults (the initialisers' defaults)")
    func commandLineBuilds() throws {
        let expected: [String: any MergeMethod] = [
            "task-arithmetic": try TaskArithmetic(), "ties": try TIES(), "dare": try DARE(), "linear": Linear(),
            "breadcrumbs": try Breadcrumbs(), "model-stock": ModelStock(), "metagpt": MetaGPT(), "magmax": try MagMax(),
            "tsv-m": try TSVM(), "iso-c": try IsoC(), "della": try DELLA(), "sce": try SCE(), "nearswap": try NearSwap(),
            "passthrough": try Passthrough(), "arcee-fusion": ArceeFusion(), "slerp": try Slerp(t: 0.5), "nuslerp": NuSlerp(),
            "multislerp": try MultiSlerp(), "karcher": try Karcher(),
        ]
        for description in Self.descriptions {
            let defaults = description.commandPreset.defaults.filter { key, _ in description.parameter(key)?.flag != nil }
            let built = try description.build(commandLine: defaults, seed: 0)
            let reference = try #require(expected[description.info.name])
            #expect(json(built) == json(reference))
        }
    }

    @Test("mergekit's names get mergekit's semantics and defaults")
    func mergekitPresets() throws {
        // ties: per-tensor trim, weighted vote, normalised by the agreeing weights, density 1 per model.
        #expect(json(try recipeMethod("ties")) == json(try TIES.mergekit(density: .init([1, 1]))))
        #expect(json(try recipeMethod("ties", ["normalize": .bool(false)]))
                == json(try TIES(density: .init([1, 1]), trimScope: .tensor, vote: .weighted, merge: .sum)))
        // dare_ties: DARE combined by TIES, L1 rescale, weighted vote, sum; combine cannot change it.
        let dareTies = try DARE(dropRate: .init([0, 0]), rescale: .l1, combination: .ties, vote: .weighted, merge: .sum)
        #expect(json(try recipeMethod("dare_ties")) == json(dareTies))
        #expect(json(try recipeMethod("dare_ties", ["combine": .string("task-arithmetic")])) == json(dareTies))
        #expect(json(try recipeMethod("dare_linear", ["normalize": .bool(true)]))
                == json(try DARE(dropRate: .init([0, 0]), rescale: .l1, combination: .taskArithmetic, normalize: true)))
        // breadcrumbs_ties votes; breadcrumbs does not.
        #expect(json(try recipeMethod("breadcrumbs_ties")) == json(try Breadcrumbs(density: .init([0.1, 0.1]), gamma: .init([0.01, 0.01]), vote: .weighted)))
        #expect(json(try recipeMethod("breadcrumbs")) == json(try Breadcrumbs(density: .init([0.1, 0.1]), gamma: .init([0.01, 0.01]))))
    }

    @Test("MergeKit's own dare keeps the paper's defaults; density is 1 − p; a model without drop_rate keeps everything")
    func dareRecipe() throws {
        let paper = try DARE(dropRate: .init([0.9, 0.9]))
        #expect(json(try recipeMethod("dare")) == json(paper))
        // normalize does not select the merge under the paper's preset.
        #expect(json(try recipeMethod("dare", ["normalize": .bool(true), "combine": .string("ties")]))
                == json(try DARE(dropRate: .init([0.9, 0.9]), combination: .ties)))
        #expect(json(try recipeMethod("dare", [:], models: [["drop_rate": .number(0.5)], [:]]))
                == json(try DARE(dropRate: .init([0.5, 0]))))
        #expect(json(try recipeMethod("dare", [:], models: [["density": .number(0.25)], [:]]))
                == json(try DARE(dropRate: .init([0.75, 0.9]))))
    }

    @Test("A word outside a choice names the key and the words allowed")
    func invalidChoice() throws {
        #expect(throws: MergeKitError.self) { try recipeMethod("ties", ["vote": .string("nope")]) }
        do {
            _ = try recipeMethod("tsv_m", ["null_space": .string("nope")])
            Issue.record("accepted null_space nope")
        } catch let error as MergeKitError {
            #expect(error.description.contains("null_space = \"nope\" is not one of drop, keep"), "\(error)")
        }
    }
}
