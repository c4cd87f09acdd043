import ArgumentParser
import MergeKit

struct MethodsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "methods", abstract: "List the merge methods.")

    @Flag(name: .long, help: "Print the list as JSON.")
    var json = false

    func run() throws {
        if json {
            print(JSONValue.array(MethodRegistry.all.map { info in
                .object([JSONMember("name", .string(info.name)), JSONMember("summary", .string(info.summary)),
                         JSONMember("reference", .string(info.reference))])
            }).serialized(indent: 2))
            return
        }
        let width = MethodRegistry.all.map(\.name.count).max() ?? 0
        for info in MethodRegistry.all {
            print(info.name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + info.summary)
            print(String(repeating: " ", count: width) + "  (" + info.reference + ")")
        }
    }
}
