import PrimaJSON

/// The stage-1 knowledge corpus written with every cohort (risk-factors.jsonl, Formats/prima-training.md §3.6):
/// one record per risk factor, with a summary and details on how it relates to the six diagnoses.
///
/// Written for this project in plain words from general dermatology knowledge; illustrative and NOT vetted by a
/// physician (README.txt and Docs/cohort.md say so; the record format allows no extra key to say it here).
public enum CohortCorpus {
    public struct Record: Sendable, Equatable {
        public let name: String
        public let summary: String
        public let details: String
    }

    public static let records: [Record] = [
        Record(name: "Age",
               summary: "Most skin cancers and keratoses of sun-damaged skin appear in older adults, while common naevi are typical of younger people.",
               details: "Basal cell carcinoma, squamous cell carcinoma, actinic keratosis and seborrheic keratosis become more frequent with every decade after forty, because they follow years of accumulated ultraviolet damage or, for seborrheic keratosis, skin ageing itself. Melanoma occurs across adult life, with many cases in middle age and a rising rate in the elderly. Acquired melanocytic naevi appear in childhood and early adulthood and tend to fade later, so a new pigmented lesion in an older patient deserves more suspicion than one in a young adult."),
        Record(name: "Sex",
               summary: "Sex shifts the risk modestly, mostly through habits of sun exposure and occupation.",
               details: "Men are somewhat more often affected by squamous cell carcinoma, actinic keratosis and basal cell carcinoma, which is usually explained by more outdoor work and less sun protection. Melanoma sites differ by sex: the trunk and back are common in men, the legs in women. Seborrheic keratosis and naevi show no strong difference between the sexes."),
        Record(name: "Sun exposure and body region",
               summary: "Chronically sun-exposed sites such as the face, nose, ears, scalp, lips, forearms and backs of the hands carry most keratinocyte cancers and actinic keratoses.",
               details: "Basal cell carcinoma is most common on the face, especially the nose, and on the ears and upper trunk. Squamous cell carcinoma and actinic keratosis favour the sites with the most cumulative sun: face, lower lip, ears, scalp of bald patients, forearms and hands. Melanoma is linked to intermittent intense exposure and sunburns and often appears on the back, chest, arms and legs. Seborrheic keratosis is frequent on the trunk and face. Naevi are spread over the trunk and limbs and are not tied to chronically exposed sites."),
        Record(name: "Fitzpatrick skin type",
               summary: "Fair skin that burns easily and tans poorly (types I and II) carries the highest risk of ultraviolet-related lesions.",
               details: "Types I to III are strongly associated with basal cell carcinoma, squamous cell carcinoma, actinic keratosis and melanoma, because less melanin protects less against ultraviolet damage. Darker skin types IV to VI have far lower rates of these lesions, though cancers in them are often found later. Seborrheic keratosis and naevi occur in every skin type; on darker skin, naevi and keratoses are more deeply pigmented."),
        Record(name: "Personal history of skin cancer",
               summary: "A previous skin cancer is one of the strongest predictors of another one.",
               details: "Patients treated for a basal cell or squamous cell carcinoma have a high chance of developing a new keratinocyte cancer within a few years, and often carry actinic keratoses as a sign of the same field damage. A previous melanoma raises the risk of a second primary melanoma. The history says little about seborrheic keratosis or common naevi, which are benign and frequent in the general population."),
        Record(name: "Personal history of other cancer",
               summary: "A history of cancer elsewhere is a weak, indirect marker for skin cancer risk.",
               details: "Cancer treatment with immunosuppression or radiation raises the risk of squamous and basal cell carcinoma in the treated or exposed skin, and older patients with any cancer history tend to carry more sun damage. The association with melanoma, actinic keratosis, seborrheic keratosis and naevi is modest and should not weigh heavily on its own."),
        Record(name: "Family history and ancestry",
               summary: "European ancestry and a family history of skin cancer point to fair, sun-sensitive skin and inherited susceptibility.",
               details: "Descendants of northern and central European immigrants living in tropical sunlight have a high burden of basal cell carcinoma, squamous cell carcinoma and actinic keratosis. A family history of melanoma, especially with many naevi, is an established melanoma risk factor. The parents' origin mostly acts through skin type and is not specific to any single diagnosis."),
        Record(name: "Itching",
               summary: "Itching is common in actinic keratosis, squamous cell carcinoma and irritated seborrheic keratosis, and unusual in a quiet naevus.",
               details: "Scaly lesions such as actinic keratosis and the crusted surface of squamous cell carcinoma often itch or sting. Seborrheic keratoses itch when irritated by clothing. New itching in a pigmented lesion is a warning sign of melanoma. Basal cell carcinoma may itch mildly. A stable common naevus rarely itches."),
        Record(name: "Bleeding",
               summary: "A lesion that bleeds spontaneously or after minor trauma suggests a carcinoma or an advanced melanoma.",
               details: "Bleeding and a sore that does not heal are classic signs of basal cell carcinoma, whose thin surface and ulcer bleed easily, and of squamous cell carcinoma. In melanoma, bleeding usually appears late, with ulceration. Actinic keratosis and seborrheic keratosis bleed mainly when scratched or caught on clothing. Naevi seldom bleed without trauma."),
        Record(name: "Growth",
               summary: "Recent growth favours a malignant lesion, in particular squamous cell carcinoma, basal cell carcinoma and melanoma.",
               details: "Squamous cell carcinoma can grow within weeks to months; basal cell carcinoma grows slowly but steadily; melanoma typically enlarges over months. Seborrheic keratoses may slowly thicken and multiply. Actinic keratoses are usually stable or fluctuate. A naevus that grows in an adult deserves attention, although naevi grow normally in children and adolescents."),
        Record(name: "Change",
               summary: "A change in size, shape or colour is the E of the ABCDE rule and a key warning sign of melanoma.",
               details: "Evolution over time is the single most important sign distinguishing melanoma from a benign naevus. Changing basal and squamous cell carcinomas usually show growth, crusting or ulceration. Seborrheic keratoses can darken or become irritated. Actinic keratoses come and go. Stable naevi do not change meaningfully."),
        Record(name: "Pain",
               summary: "Pain or tenderness is most typical of squamous cell carcinoma.",
               details: "Tenderness is a frequent feature of squamous cell carcinoma, particularly when it is thick, ulcerated or invades nerves. Actinic keratosis can sting or feel sore. Basal cell carcinoma and melanoma are usually painless until advanced. Seborrheic keratoses and naevi are painless unless inflamed."),
        Record(name: "Elevation",
               summary: "Most lesions in this set can be raised; elevation alone separates them poorly.",
               details: "Basal cell carcinoma is often a raised pearly papule or nodule with a rolled border, and squamous cell carcinoma a firm raised nodule or plaque with crust. Seborrheic keratosis is a raised, stuck-on plaque. Intradermal and compound naevi are raised, junctional naevi flat. Actinic keratosis is usually flat or slightly raised and rough. Melanoma may be flat early and raised when it grows vertically; a new nodule in a pigmented lesion is a worrying sign."),
        Record(name: "Diameter",
               summary: "Larger lesions are more often malignant; a pigmented lesion over 6 mm is the D of the ABCDE rule.",
               details: "Melanomas are often larger than 6 mm when found, and basal cell and squamous cell carcinomas commonly reach a centimetre or more. Actinic keratoses are typically small, a few millimetres, and rough rather than large. Common naevi are usually under 6 mm and round with two similar diameters, whereas melanoma is often asymmetric, with unequal diameters. Seborrheic keratoses vary from a few millimetres to a few centimetres."),
        Record(name: "Smoking",
               summary: "Smoking raises the risk of squamous cell carcinoma, especially of the lip, and has little effect on the other lesions.",
               details: "Tobacco use is associated with squamous cell carcinoma of the skin and the lower lip, and with poorer healing. Its association with basal cell carcinoma and melanoma is weak or absent in most studies. It has no known role in seborrheic keratosis, actinic keratosis or naevi beyond shared outdoor habits."),
        Record(name: "Alcohol",
               summary: "Alcohol use is a weak and indirect marker, linked in some studies to sunburn and to keratinocyte cancers.",
               details: "Drinking alcohol has been associated with more sunburns and, modestly, with basal cell carcinoma, squamous cell carcinoma and melanoma. The effect is small compared with sun exposure and skin type, and it does not help to tell seborrheic keratosis, actinic keratosis and naevi apart."),
        Record(name: "Pesticide exposure",
               summary: "Agricultural work with pesticides marks long outdoor sun exposure and is linked to keratinocyte cancers.",
               details: "Farmers exposed to pesticides spend many hours in the sun, and both exposures are associated with actinic keratosis, squamous cell carcinoma and basal cell carcinoma; arsenic-containing compounds are a known cause of keratoses and carcinomas. Evidence for melanoma is mixed. Seborrheic keratosis and naevi are not related to pesticides."),
        Record(name: "Piped water and sewage",
               summary: "Access to piped water and sewage reflects living conditions rather than a direct cause of skin disease.",
               details: "In rural populations without piped water or sewage, outdoor work, less access to care and possible arsenic in well water go together, which favours actinic keratosis and keratinocyte cancers found at a later stage. These fields carry little information about melanoma, seborrheic keratosis or naevi."),
        Record(name: "Colour and pattern",
               summary: "Several colours and an irregular pattern suggest melanoma; a uniform brown colour suggests a naevus.",
               details: "Melanoma often shows brown, black, blue-grey, red and white areas in one lesion. Common naevi are uniformly tan to brown. Seborrheic keratosis is light to dark brown with a waxy, fissured surface. Basal cell carcinoma is pink and pearly, sometimes with brown dots when pigmented, and shows fine branching vessels. Actinic keratosis is pink to red with white-yellow scale, and squamous cell carcinoma red with a thick yellow-brown crust."),
        Record(name: "Border and symmetry",
               summary: "An asymmetric lesion with an irregular, notched or blurred border is suspicious for melanoma.",
               details: "Asymmetry and border irregularity are the A and B of the ABCDE rule for melanoma. Naevi are round or oval with a smooth sharp border. Seborrheic keratosis has a sharp, stuck-on edge. Basal cell carcinoma has a raised rolled border. Actinic keratosis has an ill-defined edge that blends into the surrounding sun-damaged skin, and squamous cell carcinoma a firm, irregular edge."),
    ]

    /// risk-factors.jsonl: one compact JSON object per line, keys name, summary, details in that order.
    public static func jsonlText() -> String {
        records.map { record in
            JSONValue.object(JSONObject([("name", .string(record.name)), ("summary", .string(record.summary)),
                                         ("details", .string(record.details))])).serialized() + "\n"
        }.joined()
    }
}
