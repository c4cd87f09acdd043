/// "1 expert", "3 experts": a count with its noun in the right number (`plural` when the noun
/// does not just take an s).
func counted(_ n: Int, _ singular: String, _ plural: String? = nil) -> String {
    "\(n) " + (n == 1 ? singular : plural ?? singular + "s")
}
