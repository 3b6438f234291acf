//! The canonical table of the 302 neurons of the C. elegans hermaphrodite.
//!
//! Names and order are those of `NEURONS_302` in the worm-graph pipeline that produced the
//! "Homogenized C. elegans Neural Activity and Connectivity Data" (Simeon et al.;
//! github.com/qsimeon/worm-graph, `utils.py`, commit 371c0df): the 302 names sorted as byte
//! strings (so `AS10` comes before `AS2`). Where it came from and how it was checked:
//! `scripts/celegans/NEURONS_302.md`. Homogenized data put neuron `NEURONS_302[i]` in row `i`.

/// The 302 hermaphrodite neurons, in canonical (byte-sorted) order.
pub const NEURONS_302: [&str; 302] = [
    "ADAL", "ADAR", "ADEL", "ADER", "ADFL", "ADFR", "ADLL", "ADLR", "AFDL", "AFDR", "AIAL", "AIAR",
    "AIBL", "AIBR", "AIML", "AIMR", "AINL", "AINR", "AIYL", "AIYR", "AIZL", "AIZR", "ALA", "ALML",
    "ALMR", "ALNL", "ALNR", "AQR", "AS1", "AS10", "AS11", "AS2", "AS3", "AS4", "AS5", "AS6", "AS7",
    "AS8", "AS9", "ASEL", "ASER", "ASGL", "ASGR", "ASHL", "ASHR", "ASIL", "ASIR", "ASJL", "ASJR",
    "ASKL", "ASKR", "AUAL", "AUAR", "AVAL", "AVAR", "AVBL", "AVBR", "AVDL", "AVDR", "AVEL", "AVER",
    "AVFL", "AVFR", "AVG", "AVHL", "AVHR", "AVJL", "AVJR", "AVKL", "AVKR", "AVL", "AVM", "AWAL",
    "AWAR", "AWBL", "AWBR", "AWCL", "AWCR", "BAGL", "BAGR", "BDUL", "BDUR", "CANL", "CANR",
    "CEPDL", "CEPDR", "CEPVL", "CEPVR", "DA1", "DA2", "DA3", "DA4", "DA5", "DA6", "DA7", "DA8",
    "DA9", "DB1", "DB2", "DB3", "DB4", "DB5", "DB6", "DB7", "DD1", "DD2", "DD3", "DD4", "DD5",
    "DD6", "DVA", "DVB", "DVC", "FLPL", "FLPR", "HSNL", "HSNR", "I1L", "I1R", "I2L", "I2R", "I3",
    "I4", "I5", "I6", "IL1DL", "IL1DR", "IL1L", "IL1R", "IL1VL", "IL1VR", "IL2DL", "IL2DR", "IL2L",
    "IL2R", "IL2VL", "IL2VR", "LUAL", "LUAR", "M1", "M2L", "M2R", "M3L", "M3R", "M4", "M5", "MCL",
    "MCR", "MI", "NSML", "NSMR", "OLLL", "OLLR", "OLQDL", "OLQDR", "OLQVL", "OLQVR", "PDA", "PDB",
    "PDEL", "PDER", "PHAL", "PHAR", "PHBL", "PHBR", "PHCL", "PHCR", "PLML", "PLMR", "PLNL", "PLNR",
    "PQR", "PVCL", "PVCR", "PVDL", "PVDR", "PVM", "PVNL", "PVNR", "PVPL", "PVPR", "PVQL", "PVQR",
    "PVR", "PVT", "PVWL", "PVWR", "RIAL", "RIAR", "RIBL", "RIBR", "RICL", "RICR", "RID", "RIFL",
    "RIFR", "RIGL", "RIGR", "RIH", "RIML", "RIMR", "RIPL", "RIPR", "RIR", "RIS", "RIVL", "RIVR",
    "RMDDL", "RMDDR", "RMDL", "RMDR", "RMDVL", "RMDVR", "RMED", "RMEL", "RMER", "RMEV", "RMFL",
    "RMFR", "RMGL", "RMGR", "RMHL", "RMHR", "SAADL", "SAADR", "SAAVL", "SAAVR", "SABD", "SABVL",
    "SABVR", "SDQL", "SDQR", "SIADL", "SIADR", "SIAVL", "SIAVR", "SIBDL", "SIBDR", "SIBVL",
    "SIBVR", "SMBDL", "SMBDR", "SMBVL", "SMBVR", "SMDDL", "SMDDR", "SMDVL", "SMDVR", "URADL",
    "URADR", "URAVL", "URAVR", "URBL", "URBR", "URXL", "URXR", "URYDL", "URYDR", "URYVL", "URYVR",
    "VA1", "VA10", "VA11", "VA12", "VA2", "VA3", "VA4", "VA5", "VA6", "VA7", "VA8", "VA9", "VB1",
    "VB10", "VB11", "VB2", "VB3", "VB4", "VB5", "VB6", "VB7", "VB8", "VB9", "VC1", "VC2", "VC3",
    "VC4", "VC5", "VC6", "VD1", "VD10", "VD11", "VD12", "VD13", "VD2", "VD3", "VD4", "VD5", "VD6",
    "VD7", "VD8", "VD9",
];

/// Row of `name` in [`NEURONS_302`] (exact, case-sensitive match after trimming; `None` when
/// the name is not one of the 302).
pub fn neuron_index(name: &str) -> Option<usize> {
    NEURONS_302.binary_search(&name.trim()).ok()
}

/// Normalizes a neuron label as datasets write it: trims, upper-cases, and maps the common
/// zero-padded spelling of numbered neurons (`VA01` → `VA1`, `AS01` → `AS1`). Returns the
/// canonical name when the result is one of the 302.
pub fn canonical_neuron(name: &str) -> Option<&'static str> {
    let up = name.trim().to_ascii_uppercase();
    if let Some(i) = neuron_index(&up) {
        return Some(NEURONS_302[i]);
    }
    // strip one leading zero of a trailing number: VA01 -> VA1
    let digits = up.chars().rev().take_while(|c| c.is_ascii_digit()).count();
    if digits >= 2 {
        let (head, num) = up.split_at(up.len() - digits);
        let trimmed = num.trim_start_matches('0');
        if !trimmed.is_empty() {
            let cand = format!("{head}{trimmed}");
            return neuron_index(&cand).map(|i| NEURONS_302[i]);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_302_unique_byte_sorted() {
        assert_eq!(NEURONS_302.len(), 302);
        for w in NEURONS_302.windows(2) {
            assert!(w[0] < w[1], "{} !< {}", w[0], w[1]);
        }
        assert_eq!(NEURONS_302[0], "ADAL");
        assert_eq!(NEURONS_302[301], "VD9");
        assert_eq!(neuron_index("AVAL"), Some(53));
        assert_eq!(neuron_index("AS10"), Some(29));
    }

    #[test]
    fn canonical_names() {
        assert_eq!(canonical_neuron(" aval "), Some("AVAL"));
        assert_eq!(canonical_neuron("VA01"), Some("VA1"));
        assert_eq!(canonical_neuron("VA10"), Some("VA10"));
        assert_eq!(canonical_neuron("AVA"), None);
        assert_eq!(canonical_neuron("XYZ"), None);
    }
}
