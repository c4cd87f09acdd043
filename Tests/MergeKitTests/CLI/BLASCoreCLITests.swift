import Foundation
import Testing
@testable import MergeKit

/// merge-cli's choice of OpenBLAS kernels (`BLAS.preferredCoreType`): OpenBLAS's generic fallback
/// is replaced by the kernels the CPU can run, a user's `OPENBLAS_CORETYPE` is kept, and
/// `MERGEKIT_OPENBLAS_AUTO=0` keeps OpenBLAS's own choice. OpenBLAS reports the kernels it loaded
/// on stderr with `OPENBLAS_VERBOSE=2` ("Core: …").
@Suite("OpenBLAS kernels of merge-cli")
struct BLASCoreCLITests {
    static func core(_ environment: [String: String?]) throws -> String? {
        let result = try CLI.run(["methods"], environment: ["OPENBLAS_VERBOSE": "2"].merging(environment, uniquingKeysWith: { $1 }))
        #expect(result.status == 0, "\(result.stderr)")
        return result.stderr.split(separator: "\n").last { $0.hasPrefix("Core: ") }.map { String($0.dropFirst(6)) }
    }

    @Test("The fallback is corrected when the CPU has faster kernels; otherwise OpenBLAS's choice stays")
    func automatic() throws {
        let own = BLAS.coreName
        let preferred = BLAS.preferredCoreType(environment: [:])
        let chosen = try Self.core(["OPENBLAS_CORETYPE": nil, "MERGEKIT_OPENBLAS_AUTO": nil])
        #expect(chosen?.lowercased() == (preferred ?? own).lowercased(), "OpenBLAS here: \(own), preferred: \(preferred ?? "none")")
    }

    @Test("A user's OPENBLAS_CORETYPE is kept, and MERGEKIT_OPENBLAS_AUTO=0 keeps OpenBLAS's choice")
    func userChoice() throws {
        let own = BLAS.coreName
        #expect(try Self.core(["OPENBLAS_CORETYPE": nil, "MERGEKIT_OPENBLAS_AUTO": "0"])?.lowercased() == own.lowercased())
        #expect(try Self.core(["OPENBLAS_CORETYPE": "Prescott"])?.lowercased() == "prescott")
        #expect(BLAS.preferredCoreType(environment: ["OPENBLAS_CORETYPE": "Haswell"]) == nil)
        #expect(BLAS.preferredCoreType(environment: ["MERGEKIT_OPENBLAS_AUTO": "0"]) == nil)
    }
}
